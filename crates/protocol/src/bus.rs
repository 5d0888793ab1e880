//! Redis as the storage bus: connection settings, consumer groups and the
//! atomic "acknowledge and apply" commits every service uses.
//!
//! Delivery is at least once (entries stay pending until acknowledged, a dead
//! consumer's entries are reclaimed with XAUTOCLAIM), and every commit runs as
//! one Lua script that applies an entry's effects only when its XACK succeeds,
//! so a redelivered entry never takes effect twice.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::streams::{StreamAutoClaimReply, StreamReadReply};
use redis::{AsyncConnectionConfig, Client, IntoConnectionInfo, RedisError};
use thiserror::Error;

use crate::keys::{Keys, PAYLOAD_FIELD};
use crate::messages::DeadLetter;

/// Redis settings shared by every service (`clap` flags and env vars).
///
/// The password is read from `REDIS_PASSWORD_FILE` or the `REDIS_PASSWORD`
/// env var only, never from a flag, so it cannot show in process arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct RedisArgs {
    /// Redis address without credentials.
    #[arg(long = "redis-url", env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub url: String,
    /// File holding the Redis password (the cluster mounts the Secret here);
    /// otherwise the `REDIS_PASSWORD` env var is used when set.
    #[arg(long = "redis-password-file", env = "REDIS_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
    /// Prefix of every key and stream.
    #[arg(long = "key-prefix", env = "KEY_PREFIX", default_value = crate::keys::DEFAULT_PREFIX)]
    pub key_prefix: String,
    /// How long to keep trying to reach Redis at start-up before failing.
    #[arg(long = "redis-connect-timeout-secs", env = "REDIS_CONNECT_TIMEOUT_SECS", default_value_t = 30)]
    pub connect_timeout_secs: u64,
}

impl RedisArgs {
    /// Settings for a given URL, password from the environment as usual.
    pub fn for_url(url: impl Into<String>, key_prefix: impl Into<String>) -> Self {
        Self { url: url.into(), password_file: None, key_prefix: key_prefix.into(), connect_timeout_secs: 30 }
    }

    pub fn keys(&self) -> Keys {
        Keys::new(self.key_prefix.clone())
    }

    fn password(&self) -> Result<Option<String>, BusError> {
        if let Some(path) = &self.password_file {
            let text = std::fs::read_to_string(path)
                .map_err(|source| BusError::PasswordFile { path: path.clone(), source })?;
            return Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()));
        }
        Ok(std::env::var("REDIS_PASSWORD").ok().filter(|p| !p.is_empty()))
    }

    /// A client for these settings; fails on a malformed URL.
    pub fn client(&self) -> Result<Client, BusError> {
        let invalid = |reason: String| BusError::InvalidUrl { url: redact_url(&self.url), reason };
        let info = self.url.as_str().into_connection_info().map_err(|e| invalid(e.to_string()))?;
        let info = match self.password()? {
            Some(password) => {
                let settings = info.redis_settings().clone().set_password(password);
                info.set_redis_settings(settings)
            }
            None => info,
        };
        Client::open(info).map_err(|e| invalid(e.to_string()))
    }
}

/// Hides credentials a user may have put in a Redis URL before it is logged.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_string(),
    }
}

#[derive(Debug, Error)]
pub enum BusError {
    #[error("REDIS_URL {url:?} is not a valid Redis URL: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("REDIS_PASSWORD_FILE {path:?} cannot be read: {source}")]
    PasswordFile { path: PathBuf, source: std::io::Error },
    #[error("REDIS_PASSWORD (or REDIS_PASSWORD_FILE) was refused by Redis at {url}: {reason}")]
    Auth { url: String, reason: String },
    #[error("REDIS_URL {url} is unreachable after {secs} s: {source}")]
    Unreachable { url: String, secs: u64, source: RedisError },
    #[error(transparent)]
    Redis(#[from] RedisError),
}

fn is_auth_error(e: &RedisError) -> bool {
    let text = e.to_string();
    text.contains("WRONGPASS")
        || text.contains("NOAUTH")
        || text.contains("invalid password")
        || text.contains("AuthenticationFailed")
}

/// Exponential backoff from 100 ms to 5 s.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: Duration::from_millis(100) }
    }
}

impl Backoff {
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(Duration::from_secs(5));
        delay
    }
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }
}

/// A service's connection to the bus: a reconnecting manager for writes and
/// the client to open dedicated blocking readers from.
#[derive(Clone)]
pub struct Bus {
    client: Client,
    keys: Keys,
    /// Reconnecting connection for commands that do not block.
    pub conn: ConnectionManager,
}

impl Bus {
    /// Connects, retrying with backoff up to `connect_timeout_secs`; a refused
    /// password fails at once.
    pub async fn connect(args: &RedisArgs) -> Result<Self, BusError> {
        let client = args.client()?;
        let url = redact_url(&args.url);
        let deadline = Instant::now() + Duration::from_secs(args.connect_timeout_secs);
        let mut backoff = Backoff::default();
        loop {
            let attempt = async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(5)))
                    .set_response_timeout(Some(Duration::from_secs(10)))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_secs(2));
                let mut conn = client.get_connection_manager_with_config(config).await?;
                redis::cmd("PING").query_async::<String>(&mut conn).await?;
                Ok::<_, RedisError>(conn)
            };
            match attempt.await {
                Ok(conn) => return Ok(Self { client, keys: args.keys(), conn }),
                Err(e) if is_auth_error(&e) => return Err(BusError::Auth { url, reason: e.to_string() }),
                Err(e) if Instant::now() >= deadline => {
                    return Err(BusError::Unreachable { url, secs: args.connect_timeout_secs, source: e })
                }
                Err(e) => {
                    tracing::warn!(redis = %url, error = %e, "Redis not reachable yet, retrying");
                    backoff.wait().await;
                }
            }
        }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A dedicated connection for blocking reads: a blocking XREADGROUP would
    /// stall every other command multiplexed on the same connection, and the
    /// response timeout must outlast the block time.
    pub async fn blocking_reader(&self, block: Duration) -> Result<MultiplexedConnection, RedisError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(block + Duration::from_secs(5)));
        self.client.get_multiplexed_async_connection_with_config(&config).await
    }

    /// Creates a consumer group at the start of the stream (and the stream);
    /// an existing group is fine.
    pub async fn ensure_group(&self, stream: &str, group: &str) -> Result<(), RedisError> {
        let mut conn = self.conn.clone();
        let created: Result<(), RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(stream)
            .arg(group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match created {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    /// A consumer of `stream` in `group`.
    pub async fn consumer(
        &self,
        stream: String,
        group: &str,
        consumer: &str,
        options: ConsumerOptions,
    ) -> Result<StreamConsumer, RedisError> {
        self.ensure_group(&stream, group).await?;
        Ok(StreamConsumer {
            bus: self.clone(),
            stream,
            group: group.to_string(),
            consumer: consumer.to_string(),
            options,
            reader: None,
            pending_from: Some("0".to_string()),
            last_claim: Instant::now(),
        })
    }

    /// Number of entries of `stream` not yet acknowledged by `group`
    /// (delivered-but-pending plus never delivered).
    ///
    /// XINFO's `lag` alone is not trusted: Redis 7.0 does not restore a
    /// group's `entries-read` exactly when it replays its AOF, so after a
    /// restart `lag` can stay above zero for a group that has read everything.
    /// A group whose last delivered id is the stream's last id has nothing
    /// undelivered, whatever `lag` says.
    pub async fn backlog(&self, stream: &str, group: &str) -> Result<u64, RedisError> {
        let mut conn = self.conn.clone();
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
            // Unknown: count what follows the last delivered entry, in pages.
            _ => {
                let mut count = 0u64;
                let mut start = format!("({last_delivered}");
                loop {
                    let page: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                        .arg(stream)
                        .arg(&start)
                        .arg("+")
                        .arg("COUNT")
                        .arg(10_000)
                        .query_async(&mut conn)
                        .await?;
                    count += page.ids.len() as u64;
                    match page.ids.last() {
                        Some(last) if page.ids.len() == 10_000 => start = format!("({}", last.id),
                        _ => break count,
                    }
                }
            }
        };
        Ok(pending + undelivered)
    }
}

/// The XINFO GROUPS entry of `group` on `stream`; `None` when the stream or
/// the group does not exist.
async fn group_info(
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

/// A field of an XINFO reply; `None` when absent or nil.
fn field<T: redis::FromRedisValue>(
    fields: &HashMap<String, redis::Value>,
    name: &str,
) -> Result<Option<T>, RedisError> {
    match fields.get(name) {
        None | Some(redis::Value::Nil) => Ok(None),
        Some(v) => Ok(Some(redis::from_redis_value_ref(v)?)),
    }
}

/// Tuning of a [`StreamConsumer`].
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// Largest batch read at once.
    pub batch: usize,
    /// How long a read blocks waiting for new entries.
    pub block: Duration,
    /// Entries pending this long at another consumer are taken over.
    pub claim_idle: Duration,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        Self { batch: 1000, block: Duration::from_secs(2), claim_idle: Duration::from_secs(60) }
    }
}

/// One stream entry handed to a service.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub id: String,
    /// The payload field, `None` when the entry has none (a malformed producer).
    pub payload: Option<Vec<u8>>,
}

/// Reads a stream through a consumer group: first this consumer's own pending
/// entries (left by a crash), then entries other consumers left idle, then new ones.
pub struct StreamConsumer {
    bus: Bus,
    stream: String,
    group: String,
    consumer: String,
    options: ConsumerOptions,
    reader: Option<MultiplexedConnection>,
    pending_from: Option<String>,
    last_claim: Instant,
}

impl StreamConsumer {
    pub fn stream(&self) -> &str {
        &self.stream
    }
    pub fn group(&self) -> &str {
        &self.group
    }
    pub fn consumer(&self) -> &str {
        &self.consumer
    }
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// The next batch; empty when nothing arrived (after blocking, if `block`).
    /// On a connection error the reader is dropped and reopened on the next call.
    pub async fn next_batch(&mut self, block: bool) -> Result<Vec<Entry>, RedisError> {
        let result = self.read(block).await;
        if result.is_err() {
            self.reader = None;
        }
        result
    }

    async fn read(&mut self, block: bool) -> Result<Vec<Entry>, RedisError> {
        if let Some(from) = self.pending_from.clone() {
            let entries = self.read_group(&from, false).await?;
            match entries.last() {
                Some(last) => self.pending_from = Some(last.id.clone()),
                None => self.pending_from = None,
            }
            if !entries.is_empty() {
                return Ok(entries);
            }
        }
        if self.last_claim.elapsed() >= self.options.claim_idle {
            self.last_claim = Instant::now();
            let claimed = self.autoclaim().await?;
            if !claimed.is_empty() {
                tracing::info!(stream = %self.stream, consumer = %self.consumer, entries = claimed.len(), "reclaimed entries left idle by another consumer");
                return Ok(claimed);
            }
        }
        self.read_group(">", block).await
    }

    async fn reader(&mut self) -> Result<&mut MultiplexedConnection, RedisError> {
        if self.reader.is_none() {
            self.reader = Some(self.bus.blocking_reader(self.options.block).await?);
        }
        Ok(self.reader.as_mut().expect("reader was just set"))
    }

    async fn read_group(&mut self, from: &str, block: bool) -> Result<Vec<Entry>, RedisError> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP").arg(&self.group).arg(&self.consumer).arg("COUNT").arg(self.options.batch);
        if block {
            cmd.arg("BLOCK").arg(self.options.block.as_millis() as u64);
        }
        cmd.arg("STREAMS").arg(&self.stream).arg(from);
        let reply: Option<StreamReadReply> = cmd.query_async(self.reader().await?).await?;
        Ok(reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .map(|id| Entry { payload: id.get::<Vec<u8>>(PAYLOAD_FIELD), id: id.id })
            .collect())
    }

    async fn autoclaim(&mut self) -> Result<Vec<Entry>, RedisError> {
        let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(&self.consumer)
            .arg(self.options.claim_idle.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(self.options.batch)
            .query_async(self.reader().await?)
            .await?;
        Ok(reply.claimed.into_iter().map(|id| Entry { payload: id.get::<Vec<u8>>(PAYLOAD_FIELD), id: id.id }).collect())
    }
}

/// XACKs each entry and applies its effect only if the XACK acknowledged it,
/// atomically: a batch delivered twice (crash before the commit returned,
/// XAUTOCLAIM by another replica) takes effect once.
///
/// KEYS: 1 source stream, 2 output stream, 3 dead-letter stream, 4 table hash,
/// 5 rejection counter hash. ARGV: group, mode (`unique` or `overwrite`),
/// then per entry six values: id, code, output payload, table value,
/// dead-letter reason, dead-letter payload. An empty reason means accepted:
/// XADD the output (if any) and HSET code → table value (if any). In
/// `unique` mode an accepted code already in the table is rejected as
/// `duplicate_code` instead. Returns {applied, duplicates}.
const COMMIT_SCRIPT: &str = r#"
local group, mode = ARGV[1], ARGV[2]
local applied, duplicates = 0, 0
for i = 3, #ARGV, 6 do
  local id, code, out, value, reason, payload = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4], ARGV[i+5]
  if redis.call('XACK', KEYS[1], group, id) == 1 then
    applied = applied + 1
    if reason == '' and mode == 'unique' and redis.call('HEXISTS', KEYS[4], code) == 1 then
      reason = 'duplicate_code'
      duplicates = duplicates + 1
    end
    if reason == '' then
      if out ~= '' then redis.call('XADD', KEYS[2], '*', 'p', out) end
      if value ~= '' then redis.call('HSET', KEYS[4], code, value) end
    else
      redis.call('XADD', KEYS[3], '*', 'stage', group, 'reason', reason, 'code', code, 'entry', id, 'payload', payload)
      redis.call('HINCRBY', KEYS[5], reason, 1)
    end
  end
end
return {applied, duplicates}
"#;

/// What one consumed entry turns into.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Accepted: an optional payload for the output stream and an optional
    /// value stored under `code` in the table hash.
    Accepted { code: String, output: Option<String>, table_value: Option<String> },
    /// Rejected with a machine-readable reason; the payload is kept (cut).
    Rejected { code: String, reason: String, payload: String },
}

impl Outcome {
    /// A rejection keeping at most [`DeadLetter::MAX_PAYLOAD`] bytes of the input.
    pub fn rejected(code: &str, reason: impl Into<String>, payload: &[u8]) -> Self {
        let cut = &payload[..payload.len().min(DeadLetter::MAX_PAYLOAD)];
        Outcome::Rejected {
            code: code.to_string(),
            reason: reason.into(),
            payload: String::from_utf8_lossy(cut).into_owned(),
        }
    }
}

/// Whether an accepted code may replace one already in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableMode {
    /// First record per code wins; later ones are dead letters (`duplicate_code`).
    Unique,
    /// Later records replace earlier ones (re-scoring).
    Overwrite,
}

/// Where a [`commit`] writes.
#[derive(Debug, Clone)]
pub struct CommitTarget {
    pub source_stream: String,
    pub group: String,
    pub output_stream: String,
    pub table: String,
    pub mode: TableMode,
    pub dead_letters: String,
    pub rejection_counts: String,
}

/// Counts of one commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Committed {
    /// Entries acknowledged by this commit (others were already acknowledged).
    pub applied: u64,
    /// Accepted entries turned into `duplicate_code` dead letters.
    pub duplicates: u64,
}

/// Atomically acknowledges `entries` and applies their outcomes.
pub async fn commit(
    conn: &mut ConnectionManager,
    target: &CommitTarget,
    entries: &[(String, Outcome)],
) -> Result<Committed, RedisError> {
    static SCRIPT: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
    let script = SCRIPT.get_or_init(|| redis::Script::new(COMMIT_SCRIPT));
    let mode = match target.mode {
        TableMode::Unique => "unique",
        TableMode::Overwrite => "overwrite",
    };
    let mut total = Committed::default();
    // Bounded chunks keep each script call short: Redis runs it atomically.
    for chunk in entries.chunks(2000) {
        let mut invocation = script.prepare_invoke();
        invocation
            .key(&target.source_stream)
            .key(&target.output_stream)
            .key(&target.dead_letters)
            .key(&target.table)
            .key(&target.rejection_counts)
            .arg(&target.group)
            .arg(mode);
        for (id, outcome) in chunk {
            invocation.arg(id);
            match outcome {
                Outcome::Accepted { code, output, table_value } => {
                    invocation
                        .arg(code)
                        .arg(output.as_deref().unwrap_or(""))
                        .arg(table_value.as_deref().unwrap_or(""))
                        .arg("")
                        .arg("");
                }
                Outcome::Rejected { code, reason, payload } => {
                    invocation.arg(code).arg("").arg("").arg(reason).arg(payload);
                }
            }
        }
        let (applied, duplicates): (u64, u64) = invocation.invoke_async(conn).await?;
        total.applied += applied;
        total.duplicates += duplicates;
    }
    Ok(total)
}

/// Reads `consumer` until shutdown (or, with `once`, until nothing is left)
/// and hands each batch to `handle`. A failing batch is retried with backoff
/// and never skipped; on shutdown the batch in hand is finished first.
/// Returns the number of entries handled.
pub async fn consume<E: std::fmt::Display>(
    consumer: &mut StreamConsumer,
    shutdown: &crate::service::Shutdown,
    once: bool,
    mut handle: impl AsyncFnMut(&[Entry]) -> Result<(), E>,
) -> u64 {
    let mut handled = 0;
    let mut backoff = Backoff::default();
    while !shutdown.is_triggered() {
        let batch = tokio::select! {
            batch = consumer.next_batch(!once) => batch,
            _ = shutdown.wait() => break,
        };
        let batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(stream = %consumer.stream(), error = %e, "read failed, reconnecting");
                backoff.wait().await;
                continue;
            }
        };
        if batch.is_empty() {
            if once {
                break;
            }
            continue;
        }
        loop {
            match handle(&batch).await {
                Ok(()) => break,
                Err(e) if shutdown.is_triggered() => {
                    tracing::error!(error = %e, "batch failed during shutdown; it stays pending and will be redelivered");
                    return handled;
                }
                Err(e) => {
                    tracing::warn!(stream = %consumer.stream(), error = %e, "batch failed, retrying");
                    backoff.wait().await;
                }
            }
        }
        handled += batch.len() as u64;
        backoff = Backoff::default();
    }
    handled
}

/// Adds each product whose code is new to the seen-set and the raw stream,
/// atomically, so that loading the same records twice adds nothing.
/// KEYS: seen set, raw stream. ARGV: code, payload, code, payload, …
const ADD_NEW_SCRIPT: &str = r#"
local sent = 0
for i = 1, #ARGV, 2 do
  if redis.call('SADD', KEYS[1], ARGV[i]) == 1 then
    redis.call('XADD', KEYS[2], '*', 'p', ARGV[i + 1])
    sent = sent + 1
  end
end
return sent
"#;

/// Sends `(code, RawProduct JSON)` pairs to the raw stream, skipping codes
/// already sent; returns how many were new.
pub async fn add_new_products(
    conn: &mut ConnectionManager,
    keys: &Keys,
    products: &[(String, String)],
) -> Result<u64, RedisError> {
    static SCRIPT: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
    let script = SCRIPT.get_or_init(|| redis::Script::new(ADD_NEW_SCRIPT));
    let mut sent = 0;
    for chunk in products.chunks(2000) {
        let mut invocation = script.prepare_invoke();
        invocation.key(keys.seen_codes()).key(keys.raw_stream());
        for (code, payload) in chunk {
            invocation.arg(code).arg(payload);
        }
        sent += invocation.invoke_async::<u64>(conn).await?;
    }
    Ok(sent)
}

/// Appends dead letters in one pipeline.
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
    }
    pipe.exec_async(conn).await
}

/// How many entries were ever added to a stream (`entries-added`): unlike
/// XLEN, trimming does not lower it, so reconciliation can count on it.
pub async fn entries_added(conn: &mut ConnectionManager, stream: &str) -> Result<u64, RedisError> {
    let info: HashMap<String, redis::Value> = redis::cmd("XINFO").arg("STREAM").arg(stream).query_async(conn).await?;
    Ok(field::<u64>(&info, "entries-added")?.unwrap_or(0))
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
struct StreamId(u64, u64);

impl StreamId {
    fn parse(id: &str) -> Self {
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
    let mut cursor = 0u64;
    let mut out = Vec::new();
    loop {
        let (next, page): (u64, Vec<(String, String)>) =
            redis::cmd("HSCAN").arg(key).arg(cursor).arg("COUNT").arg(5000).query_async(conn).await?;
        out.extend(page);
        if next == 0 {
            return Ok(out);
        }
        cursor = next;
    }
}

/// Every entry of a stream, read with XRANGE in pages (does not consume).
pub async fn read_stream(conn: &mut ConnectionManager, stream: &str) -> Result<Vec<Entry>, RedisError> {
    let mut out: Vec<Entry> = Vec::new();
    let mut start = "-".to_string();
    loop {
        let reply: redis::streams::StreamRangeReply =
            redis::cmd("XRANGE").arg(stream).arg(&start).arg("+").arg("COUNT").arg(10_000).query_async(conn).await?;
        let n = reply.ids.len();
        out.extend(reply.ids.into_iter().map(|id| Entry { payload: id.get::<Vec<u8>>(PAYLOAD_FIELD), id: id.id }));
        match out.last() {
            Some(last) if n == 10_000 => start = format!("({}", last.id),
            _ => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_write_the_payload_field() {
        let field = format!("'{PAYLOAD_FIELD}'");
        assert!(COMMIT_SCRIPT.contains(&field) && ADD_NEW_SCRIPT.contains(&field));
    }

    #[test]
    fn redacts_credentials_in_urls() {
        assert_eq!(redact_url("redis://:secret@host:6379"), "redis://***@host:6379");
        assert_eq!(redact_url("redis://host:6379"), "redis://host:6379");
    }

    #[test]
    fn invalid_url_names_the_setting() {
        let err = RedisArgs::for_url("not a url", "x:").client().expect_err("must fail");
        assert!(err.to_string().starts_with("REDIS_URL"), "{err}");
    }

    #[test]
    fn backoff_grows_to_a_cap() {
        let mut b = Backoff::default();
        let delays: Vec<_> = (0..10).map(|_| b.next_delay()).collect();
        assert_eq!(delays[0], Duration::from_millis(100));
        assert_eq!(delays[1], Duration::from_millis(200));
        assert_eq!(*delays.last().unwrap(), Duration::from_secs(5));
    }
}
