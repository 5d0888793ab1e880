//! Reading a stream through a consumer group, and the loop that hands
//! batches to a service until shutdown.

use std::time::{Duration, Instant};

use lab8_protocol::keys::PAYLOAD_FIELD;
use lab8_service::Shutdown;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamAutoClaimReply, StreamReadReply};
use redis::RedisError;

use crate::connection::{Backoff, Bus};

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
    pub(crate) fn new(bus: Bus, stream: String, group: &str, consumer: &str, options: ConsumerOptions) -> Self {
        Self {
            bus,
            stream,
            group: group.to_string(),
            consumer: consumer.to_string(),
            options,
            reader: None,
            pending_from: Some("0".to_string()),
            last_claim: Instant::now(),
        }
    }

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

/// Reads `consumer` until shutdown (or, with `once`, until nothing is left)
/// and hands each batch to `handle`. A failing batch is retried with backoff
/// and never skipped; on shutdown the batch in hand is finished first.
/// Returns the number of entries handled.
pub async fn consume<E: std::fmt::Display>(
    consumer: &mut StreamConsumer,
    shutdown: &Shutdown,
    once: bool,
    mut handle: impl AsyncFnMut(&[Entry]) -> Result<(), E>,
) -> u64 {
    let mut handled = 0;
    let mut backoff = Backoff::default();
    while !shutdown.is_triggered() {
        // Not cancelled by shutdown: whatever Redis hands this read is pending
        // at this consumer from then on, so the read ends (within BLOCK_MS)
        // and its batch is handled and acknowledged before the loop exits.
        let batch = consumer.next_batch(!once).await;
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
