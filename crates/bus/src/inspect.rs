//! Read-only views of the bus for tests and tools (feature `testing`):
//! services never need them.

use std::collections::{BTreeMap, HashMap};

use lab8_protocol::keys::PAYLOAD_FIELD;
use redis::aio::ConnectionManager;
use redis::RedisError;

use crate::connection::Bus;
use crate::consumer::Entry;
use crate::maintenance::{field, group_info, StreamId};

/// Number of entries of `stream` not yet acknowledged by `group`
/// (delivered-but-pending plus never delivered).
///
/// XINFO's `lag` alone is not trusted: Redis 7.0 does not restore a
/// group's `entries-read` exactly when it replays its AOF, so after a
/// restart `lag` can stay above zero for a group that has read everything.
/// A group whose last delivered id is the stream's last id has nothing
/// undelivered, whatever `lag` says.
pub async fn backlog(bus: &Bus, stream: &str, group: &str) -> Result<u64, RedisError> {
    let mut conn = bus.conn();
    let Some(fields) = group_info(&mut conn, stream, group).await? else {
        return Ok(0);
    };
    let pending = field::<u64>(&fields, "pending")?.unwrap_or(0);
    let last_delivered = StreamId::parse(&field::<String>(&fields, "last-delivered-id")?.unwrap_or_default());
    let info: HashMap<String, redis::Value> =
        redis::cmd("XINFO").arg("STREAM").arg(stream).query_async(&mut conn).await?;
    let last_generated = StreamId::parse(&field::<String>(&info, "last-generated-id")?.unwrap_or_default());
    if last_delivered >= last_generated {
        return Ok(pending);
    }
    let undelivered = match field::<u64>(&fields, "lag")? {
        Some(lag) if lag > 0 => lag,
        // Unknown: count what follows the last delivered entry.
        _ => xrange_from(&mut conn, stream, &format!("({last_delivered}")).await?.len() as u64,
    };
    Ok(pending + undelivered)
}

/// How many entries were ever added to a stream (`entries-added`): unlike
/// XLEN, trimming does not lower it, so reconciliation can count on it.
pub async fn entries_added(conn: &mut ConnectionManager, stream: &str) -> Result<u64, RedisError> {
    let info: HashMap<String, redis::Value> = redis::cmd("XINFO").arg("STREAM").arg(stream).query_async(conn).await?;
    Ok(field::<u64>(&info, "entries-added")?.unwrap_or(0))
}

/// The entries of `stream` from `start` (an XRANGE bound) to the end, read
/// in pages so that no reply is huge.
async fn xrange_from(
    conn: &mut ConnectionManager,
    stream: &str,
    start: &str,
) -> Result<Vec<redis::streams::StreamId>, RedisError> {
    const PAGE: usize = 10_000;
    let mut out = Vec::new();
    let mut start = start.to_string();
    loop {
        let reply: redis::streams::StreamRangeReply =
            redis::cmd("XRANGE").arg(stream).arg(&start).arg("+").arg("COUNT").arg(PAGE).query_async(conn).await?;
        let full = reply.ids.len() == PAGE;
        out.extend(reply.ids);
        match out.last() {
            Some(last) if full => start = format!("({}", last.id),
            _ => return Ok(out),
        }
    }
}

/// Every entry of a stream (does not consume).
pub async fn read_stream(conn: &mut ConnectionManager, stream: &str) -> Result<Vec<Entry>, RedisError> {
    let ids = xrange_from(conn, stream, "-").await?;
    Ok(ids.into_iter().map(|id| Entry { payload: id.get::<Vec<u8>>(PAYLOAD_FIELD), id: id.id }).collect())
}

/// Every dead letter of the bus, as field → value maps, oldest first.
pub async fn dead_letters(bus: &Bus) -> Result<Vec<BTreeMap<String, String>>, RedisError> {
    let ids = xrange_from(&mut bus.conn(), &bus.keys().dead_letter_stream(), "-").await?;
    Ok(ids
        .iter()
        .map(|id| id.map.keys().map(|k| (k.clone(), id.get::<String>(k).unwrap_or_default())).collect())
        .collect())
}
