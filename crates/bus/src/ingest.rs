//! The source's writes: new products (idempotent by code) and its dead letters.

use std::sync::OnceLock;

use lab8_protocol::keys::PAYLOAD_FIELD;
use lab8_protocol::messages::DeadLetter;
use lab8_protocol::Keys;
use redis::aio::ConnectionManager;
use redis::RedisError;

/// Sends `(code, RawProduct JSON)` pairs to the raw stream, skipping codes
/// already sent; returns how many were new.
pub async fn add_new_products(
    conn: &mut ConnectionManager,
    keys: &Keys,
    products: &[(String, String)],
) -> Result<u64, RedisError> {
    static SCRIPT: OnceLock<redis::Script> = OnceLock::new();
    let script = SCRIPT.get_or_init(|| redis::Script::new(include_str!("ingest.lua")));
    let mut sent = 0;
    for chunk in products.chunks(2000) {
        let mut invocation = script.prepare_invoke();
        invocation.key(keys.seen_codes()).key(keys.raw_stream()).arg(PAYLOAD_FIELD);
        for (code, payload) in chunk {
            invocation.arg(code).arg(payload);
        }
        sent += invocation.invoke_async::<u64>(conn).await?;
    }
    Ok(sent)
}

/// Appends dead letters and counts them by reason, in one pipeline.
pub async fn add_dead_letters(
    conn: &mut ConnectionManager,
    keys: &Keys,
    letters: &[DeadLetter],
) -> Result<(), RedisError> {
    if letters.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for letter in letters {
        pipe.cmd("XADD").arg(keys.dead_letter_stream()).arg("*").arg(&letter.fields()[..]).ignore();
        pipe.hincr(keys.rejections(letter.stage), letter.reason.wire_name(), 1).ignore();
    }
    pipe.exec_async(conn).await
}
