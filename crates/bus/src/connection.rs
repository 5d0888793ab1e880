//! Connecting to the bus: a reconnecting manager for writes, dedicated
//! connections for blocking reads, consumer groups, backoff.

use std::time::{Duration, Instant};

use lab8_protocol::Keys;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, RedisError};

use crate::config::{is_auth_error, redact_url, RedisArgs};
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
