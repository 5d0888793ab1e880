//! Connecting to the bus: a reconnecting manager for writes, dedicated
//! connections for blocking reads, consumer groups, backoff.

use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use lab8_protocol::Keys;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisError};

use crate::config::{is_auth_error, redact_url, Discovery, RedisArgs, ReplicaWait};
use crate::consumer::{ConsumerOptions, StreamConsumer};
use crate::BusError;

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
/// the client to open dedicated blocking readers from, both at the current
/// primary. Behind Sentinel a watcher moves them to a new primary after a
/// failover (the redis crate's managers reconnect to one fixed address).
#[derive(Clone)]
pub struct Bus {
    keys: Keys,
    link: Arc<RwLock<Link>>,
    replica_wait: ReplicaWait,
}

/// The connection to one primary.
#[derive(Clone)]
struct Link {
    client: Client,
    conn: ConnectionManager,
    /// `host:port`, as the Sentinels name it (or the URL's).
    address: String,
}

/// How often the watcher asks the Sentinels where the primary is.
const SENTINEL_POLL: Duration = Duration::from_millis(250);

fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(10)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(2))
}

/// Connects to `info` and checks that it is a primary (a replica or a
/// demoted primary would refuse writes).
async fn open_link(info: ConnectionInfo, check_role: bool) -> Result<Link, RedisError> {
    let address = info.addr().to_string();
    let client = Client::open(info)?;
    let mut conn = client.get_connection_manager_with_config(manager_config()).await?;
    if check_role {
        let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut conn).await?;
        let role = role.first().and_then(|v| redis::from_redis_value::<String>(v.clone()).ok()).unwrap_or_default();
        if role != "master" {
            return Err(RedisError::from((redis::ErrorKind::Io, "not a primary", format!("{address} is a {role}"))));
        }
    } else {
        redis::cmd("PING").query_async::<String>(&mut conn).await?;
    }
    Ok(Link { client, conn, address })
}

/// Connects to the first of `candidates` that is a primary, passing over
/// `skip` (the one the bus is on) and nodes that are not (yet) primaries.
async fn open_primary(candidates: Vec<ConnectionInfo>, skip: Option<&str>) -> Result<Link, RedisError> {
    let mut last = None;
    for info in candidates {
        if skip == Some(info.addr().to_string().as_str()) {
            continue;
        }
        match open_link(info, true).await {
            Ok(link) => return Ok(link),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| RedisError::from((redis::ErrorKind::Io, "no other primary named"))))
}

/// The Sentinels' view of the primary, one cached connection per Sentinel.
struct Sentinels {
    nodes: Vec<(ConnectionInfo, Option<MultiplexedConnection>)>,
    master: String,
    login: ConnectionInfo,
}

/// One Sentinel's answer (`None`: it does not monitor the master), and the
/// connection to ask it again on the next poll.
async fn ask_sentinel(
    info: ConnectionInfo,
    cached: Option<MultiplexedConnection>,
    master: String,
) -> (Option<MultiplexedConnection>, Result<Option<(String, u16)>, RedisError>) {
    let mut conn = match cached {
        Some(conn) => conn,
        None => {
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_response_timeout(Some(Duration::from_secs(2)));
            let client = match Client::open(info) {
                Ok(client) => client,
                Err(e) => return (None, Err(e)),
            };
            match client.get_multiplexed_async_connection_with_config(&config).await {
                Ok(conn) => conn,
                Err(e) => return (None, Err(e)),
            }
        }
    };
    match redis::cmd("SENTINEL").arg("GET-MASTER-ADDR-BY-NAME").arg(&master).query_async(&mut conn).await {
        Ok(named) => (Some(conn), Ok(named)),
        Err(e) => (None, Err(e)),
    }
}

impl Sentinels {
    /// Every address the Sentinels name as the primary, with the services'
    /// login: the most named first, ties in `REDIS_SENTINELS` order. A
    /// Sentinel still naming a demoted primary (restarted, or cut off during
    /// the failover) is outvoted, or passed over when its node says it is
    /// not a primary. The Sentinels are asked at once: one that does not
    /// answer costs its timeout once, not once per Sentinel after it.
    async fn named_primaries(&mut self) -> Result<Vec<ConnectionInfo>, RedisError> {
        let master = &self.master;
        let asks: Vec<_> = self
            .nodes
            .iter_mut()
            .map(|(info, cached)| tokio::spawn(ask_sentinel(info.clone(), cached.take(), master.clone())))
            .collect();
        let mut named: Vec<((String, u16), usize)> = Vec::new();
        let mut last = None;
        for ((info, cached), ask) in self.nodes.iter_mut().zip(asks) {
            let (conn, answer) = ask.await.unwrap_or_else(|e| {
                (None, Err(RedisError::from((redis::ErrorKind::Io, "Sentinel query", e.to_string()))))
            });
            *cached = conn;
            match answer {
                Ok(Some(address)) => match named.iter_mut().find(|(known, _)| *known == address) {
                    Some((_, sentinels)) => *sentinels += 1,
                    None => named.push((address, 1)),
                },
                Ok(None) => {
                    last = Some(RedisError::from((
                        redis::ErrorKind::Io,
                        "unknown master",
                        format!("{} does not monitor {:?}", info.addr(), self.master),
                    )))
                }
                Err(e) => last = Some(e),
            }
        }
        if named.is_empty() {
            return Err(last.expect("at least one Sentinel"));
        }
        // Stable: equal counts keep the Sentinels' order.
        named.sort_by_key(|(_, sentinels)| std::cmp::Reverse(*sentinels));
        let settings = self.login.redis_settings().clone();
        named
            .into_iter()
            .map(|((host, port), _)| {
                Ok(ConnectionAddr::Tcp(host, port).into_connection_info()?.set_redis_settings(settings.clone()))
            })
            .collect()
    }

    fn describe(&self) -> String {
        self.nodes.iter().map(|(info, _)| info.addr().to_string()).collect::<Vec<_>>().join(",")
    }
}

/// Follows the primary: whenever the Sentinels name another one, connects
/// to it and swaps it in; ends when the bus is dropped.
async fn follow_primary(link: Weak<RwLock<Link>>, mut sentinels: Sentinels) {
    let mut ticks = tokio::time::interval(SENTINEL_POLL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(link) = link.upgrade() else { return };
        let current = link.read().expect("link lock").address.clone();
        let candidates = match sentinels.named_primaries().await {
            Ok(candidates) if candidates[0].addr().to_string() != current => candidates,
            Ok(_) => continue,
            Err(e) => {
                tracing::debug!(error = %e, "no Sentinel answered; staying on {current}");
                continue;
            }
        };
        match open_primary(candidates, Some(&current)).await {
            Ok(next) => {
                tracing::warn!(from = %current, to = %next.address, "Redis primary moved (Sentinel failover): following it");
                *link.write().expect("link lock") = next;
            }
            Err(e) => tracing::warn!(error = %e, "the Sentinels name a new primary, not reachable yet"),
        }
    }
}

impl Bus {
    /// Connects, retrying with backoff up to `connect_timeout_secs`; a refused
    /// password fails at once. With `REDIS_SENTINELS`, finds the primary
    /// through them and follows it from then on.
    pub async fn connect(args: &RedisArgs) -> Result<Self, BusError> {
        let discovery = args.discovery()?;
        let url = redact_url(&args.url);
        let deadline = Instant::now() + Duration::from_secs(args.connect_timeout_secs);
        let mut backoff = Backoff::default();
        let mut sentinels = match &discovery {
            Discovery::Direct(_) => None,
            Discovery::Sentinel { sentinels, master, login } => Some(Sentinels {
                nodes: sentinels.iter().map(|info| (info.clone(), None)).collect(),
                master: master.clone(),
                login: login.clone(),
            }),
        };
        loop {
            let attempt = async {
                match (&discovery, sentinels.as_mut()) {
                    (Discovery::Direct(info), _) => open_link(info.clone(), false).await,
                    (_, Some(sentinels)) => open_primary(sentinels.named_primaries().await?, None).await,
                    (Discovery::Sentinel { .. }, None) => unreachable!("sentinels built above"),
                }
            };
            let failed = match attempt.await {
                Ok(link) => {
                    let bus = Self {
                        keys: args.keys(),
                        link: Arc::new(RwLock::new(link)),
                        replica_wait: args.replica_wait(),
                    };
                    if let Some(sentinels) = sentinels {
                        tokio::spawn(follow_primary(Arc::downgrade(&bus.link), sentinels));
                    }
                    return Ok(bus);
                }
                Err(e) => e,
            };
            let at = sentinels.as_ref().map(Sentinels::describe).unwrap_or_else(|| url.clone());
            if is_auth_error(&failed) {
                return Err(BusError::Auth { url: at, reason: failed.to_string() });
            }
            if Instant::now() >= deadline {
                return Err(match &sentinels {
                    Some(s) => {
                        BusError::NoPrimary { sentinels: at, master: s.master.clone(), reason: failed.to_string() }
                    }
                    None => BusError::Unreachable { url, secs: args.connect_timeout_secs, source: failed },
                });
            }
            tracing::warn!(redis = %at, error = %failed, "Redis not reachable yet, retrying");
            backoff.wait().await;
        }
    }

    /// The reconnecting connection for commands that do not block, at the
    /// current primary: take it per operation, not once for a service's life.
    pub fn conn(&self) -> ConnectionManager {
        self.link.read().expect("link lock").conn.clone()
    }

    /// The current primary's `host:port`.
    pub fn primary(&self) -> String {
        self.link.read().expect("link lock").address.clone()
    }

    /// How acknowledged writes wait for replicas (`REDIS_WAIT_REPLICAS`).
    pub fn replica_wait(&self) -> ReplicaWait {
        self.replica_wait
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
        let client = self.link.read().expect("link lock").client.clone();
        client.get_multiplexed_async_connection_with_config(&config).await
    }

    /// Creates a consumer group at the start of the stream (and the stream);
    /// an existing group is fine.
    pub async fn ensure_group(&self, stream: &str, group: &str) -> Result<(), RedisError> {
        let mut conn = self.conn();
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
        Ok(StreamConsumer::new(self.clone(), stream, group, consumer, options))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_a_cap() {
        let mut b = Backoff::default();
        let delays: Vec<_> = (0..10).map(|_| b.next_delay()).collect();
        assert_eq!(delays[0], Duration::from_millis(100));
        assert_eq!(delays[1], Duration::from_millis(200));
        assert_eq!(*delays.last().unwrap(), Duration::from_secs(5));
    }
}
