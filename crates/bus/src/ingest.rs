//! The source's writes: new or newer products (idempotent by code and
//! version) and its dead letters.

use std::sync::OnceLock;

use lab8_protocol::keys::PAYLOAD_FIELD;
use lab8_protocol::messages::DeadLetter;
use lab8_protocol::Keys;
use redis::aio::ConnectionManager;
use redis::RedisError;

/// A product ready to send: its code, version (`RawProduct::version`) and JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionedProduct {
    pub code: String,
    pub version: String,
    pub payload: String,
}

/// What [`add_new_products`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Added {
    /// New codes and newer versions, now on the raw stream.
    pub sent: u64,
    /// The version already sent: nothing to do.
    pub unchanged: u64,
    /// Older than the version already sent: ignored.
    pub stale: u64,
}

/// Sends products to the raw stream unless the same or a newer version of
/// their code was sent before.
pub async fn add_new_products(
    conn: &mut ConnectionManager,
    keys: &Keys,
    products: &[VersionedProduct],
) -> Result<Added, RedisError> {
    static SCRIPT: OnceLock<redis::Script> = OnceLock::new();
    let script =
        SCRIPT.get_or_init(|| redis::Script::new(&format!("{}\n{}", crate::VERSION_LUA, include_str!("ingest.lua"))));
    let mut added = Added::default();
    for chunk in products.chunks(2000) {
        let mut invocation = script.prepare_invoke();
        invocation.key(keys.seen_codes()).key(keys.raw_stream()).arg(PAYLOAD_FIELD);
        for product in chunk {
            invocation.arg(&product.code).arg(&product.version).arg(&product.payload);
        }
        let (sent, unchanged, stale): (u64, u64, u64) = invocation.invoke_async(conn).await?;
        added.sent += sent;
        added.unchanged += unchanged;
        added.stale += stale;
    }
    Ok(added)
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
