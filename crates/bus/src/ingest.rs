//! The source's writes: new or newer products (idempotent by code and
//! version) and its dead letters.

use std::sync::OnceLock;

use lab8_protocol::keys::PAYLOAD_FIELD;
use lab8_protocol::messages::DeadLetter;
use lab8_protocol::Keys;
use redis::aio::ConnectionManager;
use redis::{ErrorKind, ServerErrorKind};

use crate::config::ReplicaWait;
use crate::BusError;

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
/// their code was sent before; with `wait`, returns only once that many
/// replicas hold the write ([`BusError::NotReplicated`] otherwise: safe to
/// retry, the load is idempotent).
pub async fn add_new_products(
    conn: &mut ConnectionManager,
    keys: &Keys,
    products: &[VersionedProduct],
    wait: ReplicaWait,
) -> Result<Added, BusError> {
    static SCRIPT: OnceLock<redis::Script> = OnceLock::new();
    let script =
        SCRIPT.get_or_init(|| redis::Script::new(&format!("{}\n{}", crate::VERSION_LUA, include_str!("ingest.lua"))));
    let mut added = Added::default();
    for chunk in products.chunks(2000) {
        let mut call = redis::cmd("EVALSHA");
        call.arg(script.get_hash()).arg(2).arg(keys.seen_codes()).arg(keys.raw_stream()).arg(PAYLOAD_FIELD);
        for product in chunk {
            call.arg(&product.code).arg(&product.version).arg(&product.payload);
        }
        let mut pipe = redis::pipe();
        pipe.add_command(call);
        let (sent, unchanged, stale): (u64, u64, u64) = match query_replicated(conn, &mut pipe, wait).await {
            Err(BusError::Redis(e)) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                script.load_async(conn).await?;
                query_replicated(conn, &mut pipe, wait).await?
            }
            other => other?,
        };
        added.sent += sent;
        added.unchanged += unchanged;
        added.stale += stale;
    }
    Ok(added)
}

/// Appends dead letters and counts them by reason, in one pipeline (with
/// `wait`, replicated like [`add_new_products`]).
pub async fn add_dead_letters(
    conn: &mut ConnectionManager,
    keys: &Keys,
    letters: &[DeadLetter],
    wait: ReplicaWait,
) -> Result<(), BusError> {
    if letters.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for letter in letters {
        pipe.cmd("XADD").arg(keys.dead_letter_stream()).arg("*").arg(&letter.fields()[..]).ignore();
        pipe.hincr(keys.rejections(letter.stage), letter.reason.wire_name(), 1).ignore();
    }
    pipe.cmd("PING");
    let _: String = query_replicated(conn, &mut pipe, wait).await?;
    Ok(())
}

/// Runs `pipe`, whose last command answers `T`, with a `WAIT` for
/// `wait.replicas` right behind it on the same connection. In one pipeline,
/// the `WAIT` covers these writes even when the manager reconnected just
/// before: a `WAIT` sent alone on a new connection would cover no write and
/// still count every replica.
async fn query_replicated<T: redis::FromRedisValue>(
    conn: &mut ConnectionManager,
    pipe: &mut redis::Pipeline,
    wait: ReplicaWait,
) -> Result<T, BusError> {
    if wait.replicas == 0 {
        let (value,): (T,) = pipe.query_async(conn).await?;
        return Ok(value);
    }
    let mut waited = pipe.clone();
    waited.cmd("WAIT").arg(wait.replicas).arg(wait.timeout_ms);
    let (value, replicas): (T, u32) = waited.query_async(conn).await?;
    if replicas < wait.replicas {
        return Err(BusError::NotReplicated { wanted: wait.replicas, got: replicas, timeout_ms: wait.timeout_ms });
    }
    Ok(value)
}
