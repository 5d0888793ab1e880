//! Keeping the bus small: trimming what every consumer group acknowledged,
//! and the XINFO helpers it (and the inspectors) read groups with.

use std::collections::HashMap;

use redis::aio::ConnectionManager;
use redis::RedisError;

/// The XINFO GROUPS entry of `group` on `stream`; `None` when the stream or
/// the group does not exist.
pub(crate) async fn group_info(
    conn: &mut ConnectionManager,
    stream: &str,
    group: &str,
) -> Result<Option<HashMap<String, redis::Value>>, RedisError> {
    let groups: Vec<HashMap<String, redis::Value>> =
        match redis::cmd("XINFO").arg("GROUPS").arg(stream).query_async(conn).await {
            Ok(groups) => groups,
            Err(e) if e.to_string().contains("no such key") => return Ok(None),
            Err(e) => return Err(e),
        };
    Ok(groups.into_iter().find(|g| field::<String>(g, "name").ok().flatten().as_deref() == Some(group)))
}

/// How far a consumer group is behind: entries not yet delivered to it
/// (XINFO's `lag`) and delivered but not acknowledged (`pending`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupBacklog {
    /// `None` when Redis cannot tell (its `lag` is nil after some deletions
    /// and trims): unknown is not "nothing waiting".
    pub lag: Option<u64>,
    pub pending: u64,
}

/// The backlog of `group` on `stream`. Before the group exists every entry
/// of the stream waits for it (groups start at the stream's beginning).
pub async fn group_backlog(
    conn: &mut ConnectionManager,
    stream: &str,
    group: &str,
) -> Result<GroupBacklog, RedisError> {
    let Some(info) = group_info(conn, stream, group).await? else {
        let entries: u64 = redis::cmd("XLEN").arg(stream).query_async(conn).await?;
        return Ok(GroupBacklog { lag: Some(entries), pending: 0 });
    };
    Ok(GroupBacklog { lag: field(&info, "lag")?, pending: field(&info, "pending")?.unwrap_or(0) })
}

/// A field of an XINFO reply; `None` when absent or nil.
pub(crate) fn field<T: redis::FromRedisValue>(
    fields: &HashMap<String, redis::Value>,
    name: &str,
) -> Result<Option<T>, RedisError> {
    match fields.get(name) {
        None | Some(redis::Value::Nil) => Ok(None),
        Some(v) => Ok(Some(redis::from_redis_value_ref(v)?)),
    }
}

/// Trims the entries of `stream` that every one of `groups` has acknowledged
/// (XTRIM MINID at the oldest entry still pending or not yet delivered), so
/// the bus does not grow without bound; nothing unacknowledged is removed.
/// Returns the number of entries trimmed (0 while a group does not exist yet).
pub async fn trim_acknowledged(conn: &mut ConnectionManager, stream: &str, groups: &[&str]) -> Result<u64, RedisError> {
    let mut keep_from: Option<StreamId> = None;
    for group in groups {
        let Some(info) = group_info(conn, stream, group).await? else {
            return Ok(0);
        };
        let last_delivered: String = field(&info, "last-delivered-id")?.unwrap_or_default();
        // XPENDING summary: [count, oldest id, newest id, consumers]; the oldest is nil when none.
        let (_, oldest_pending, _, _): (u64, Option<String>, Option<String>, redis::Value) =
            redis::cmd("XPENDING").arg(stream).arg(group).query_async(conn).await?;
        let point = StreamId::parse(oldest_pending.as_deref().unwrap_or(&last_delivered));
        keep_from = Some(match keep_from {
            Some(current) if current <= point => current,
            _ => point,
        });
    }
    match keep_from {
        Some(point) if point > StreamId::default() => {
            redis::cmd("XTRIM").arg(stream).arg("MINID").arg(point.to_string()).query_async(conn).await
        }
        _ => Ok(0),
    }
}

/// A stream entry id, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct StreamId(u64, u64);

impl StreamId {
    pub(crate) fn parse(id: &str) -> Self {
        let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
        Self(ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

/// Every field and value of a hash, read with HSCAN in pages (no single
/// huge reply, no blocking Redis on a big table).
pub async fn scan_hash(conn: &mut ConnectionManager, key: &str) -> Result<Vec<(String, String)>, RedisError> {
    let mut out = Vec::new();
    scan_hash_pages(conn, key, |page| {
        out.extend(page);
        Ok::<_, RedisError>(())
    })
    .await?;
    Ok(out)
}

/// Every field and value of a hash, handed to `each_page` one HSCAN page at
/// a time, so a reader of millions of entries keeps what it needs of each
/// page, never the whole hash as strings.
pub async fn scan_hash_pages<E: From<RedisError>>(
    conn: &mut ConnectionManager,
    key: &str,
    mut each_page: impl FnMut(Vec<(String, String)>) -> Result<(), E>,
) -> Result<(), E> {
    let mut cursor = 0u64;
    loop {
        let (next, page): (u64, Vec<(String, String)>) =
            redis::cmd("HSCAN").arg(key).arg(cursor).arg("COUNT").arg(5000).query_async(conn).await?;
        each_page(page)?;
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}
