//! Sends products to the raw stream, idempotent by product code, and
//! rejected records to the dead-letter stream.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use lab8_bus::ingest::{add_dead_letters, add_new_products, VersionedProduct};
use lab8_bus::{Bus, BusError};
use lab8_protocol::messages::{DeadLetter, Stage};
use lab8_protocol::version::version_of;

use crate::input::{read_file, ReadOptions, SourceRecord};

/// Counts of one load (or one HTTP batch).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct LoadSummary {
    /// Records read from the input.
    pub read: u64,
    /// Products added to the raw stream.
    pub sent: u64,
    /// Products whose code was already loaded in the same version.
    pub duplicates: u64,
    /// Products older than the version already loaded (ignored).
    pub stale: u64,
    /// Records sent to the dead-letter stream, by reason.
    pub rejected: BTreeMap<String, u64>,
    pub seconds: f64,
}

impl LoadSummary {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Logs the counts with `message`.
    pub fn log(&self, message: &str) {
        tracing::info!(
            read = self.read,
            sent = self.sent,
            duplicates = self.duplicates,
            stale = self.stale,
            rejected = self.rejected_total(),
            "{message}"
        );
    }

    fn add(&mut self, other: &LoadSummary) {
        self.read += other.read;
        self.sent += other.sent;
        self.duplicates += other.duplicates;
        self.stale += other.stale;
        for (reason, n) in &other.rejected {
            *self.rejected.entry(reason.clone()).or_default() += n;
        }
    }
}

impl std::fmt::Display for LoadSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rate = if self.seconds > 0.0 { self.read as f64 / self.seconds } else { 0.0 };
        writeln!(f, "read        {:>10}", self.read)?;
        writeln!(f, "sent        {:>10}", self.sent)?;
        writeln!(f, "duplicates  {:>10}", self.duplicates)?;
        writeln!(f, "stale       {:>10}", self.stale)?;
        writeln!(f, "rejected    {:>10}", self.rejected_total())?;
        for (reason, n) in &self.rejected {
            writeln!(f, "  {reason:<30} {n:>8}")?;
        }
        write!(f, "time        {:>10.2} s ({rate:.0} records/s)", self.seconds)
    }
}

/// A chunk ready to send: products serialised with their versions, rejections
/// as dead letters, and the counts known before Redis answers. Built off the
/// async task (the reader thread), so parsing and serialising overlap the
/// round trips to Redis.
#[derive(Debug, Default)]
pub struct Prepared {
    products: Vec<VersionedProduct>,
    dead_letters: Vec<DeadLetter>,
    summary: LoadSummary,
}

impl From<Vec<SourceRecord>> for Prepared {
    fn from(records: Vec<SourceRecord>) -> Self {
        let mut prepared = Prepared {
            products: Vec::with_capacity(records.len()),
            summary: LoadSummary { read: records.len() as u64, ..Default::default() },
            ..Default::default()
        };
        for record in records {
            match record {
                Ok(product) => {
                    let payload = serde_json::to_string(&product).expect("RawProduct serialises");
                    // The payload is the product's canonical JSON: hash it, not a second serialisation.
                    let version = version_of(product.last_modified, payload.as_bytes());
                    prepared.products.push(VersionedProduct { code: product.code, version, payload });
                }
                Err(rejection) => {
                    tracing::debug!(reason = %rejection.reason, location = %rejection.location, "record rejected");
                    *prepared.summary.rejected.entry(rejection.reason.wire_name()).or_default() += 1;
                    prepared.dead_letters.push(DeadLetter::new(
                        Stage::Source,
                        rejection.reason,
                        &rejection.code,
                        &rejection.location,
                        &rejection.raw,
                    ));
                }
            }
        }
        prepared
    }
}

/// Writes to the bus for the source.
#[derive(Clone)]
pub struct Loader {
    bus: Bus,
}

impl Loader {
    pub fn new(bus: &Bus) -> Self {
        Self { bus: bus.clone() }
    }

    /// Sends one chunk: products (new codes and newer versions only) and rejections (as dead letters).
    pub async fn send(&mut self, records: Vec<SourceRecord>) -> Result<LoadSummary, BusError> {
        self.send_prepared(Prepared::from(records)).await
    }

    /// Sends a chunk already serialised (see [`Prepared`]).
    /// With `REDIS_WAIT_REPLICAS`, it returns only once the replicas hold the chunk.
    pub async fn send_prepared(&mut self, prepared: Prepared) -> Result<LoadSummary, BusError> {
        let mut summary = prepared.summary;
        // The primary of now (it moves in a failover).
        let mut conn = self.bus.conn();
        let (keys, wait) = (self.bus.keys(), self.bus.replica_wait());
        if !prepared.products.is_empty() {
            let added = add_new_products(&mut conn, keys, &prepared.products, wait).await?;
            (summary.sent, summary.duplicates, summary.stale) = (added.sent, added.unchanged, added.stale);
        }
        add_dead_letters(&mut conn, keys, &prepared.dead_letters, wait).await?;
        Ok(summary)
    }

    /// Loads files in chunks of `chunk` records: a reader thread parses while
    /// this task sends, with a bounded queue between them (constant memory).
    pub async fn load_files(
        &mut self,
        paths: &[PathBuf],
        options: &ReadOptions,
        chunk: usize,
        progress: bool,
    ) -> anyhow::Result<LoadSummary> {
        let started = Instant::now();
        let mut opened = Vec::new();
        let mut total_bytes = 0;
        for path in paths {
            let (records, size, position) =
                read_file(path, options).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            total_bytes += size;
            opened.push((records, position));
        }
        let bar = if progress { ProgressBar::new(total_bytes) } else { ProgressBar::hidden() };
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}")
                .expect("progress template")
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        let positions: Vec<_> = opened.iter().map(|(_, p)| p.clone()).collect();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Prepared>(4);
        let reader = tokio::task::spawn_blocking(move || {
            for (records, _) in opened {
                let mut batch = Vec::with_capacity(chunk);
                for record in records {
                    batch.push(record);
                    if batch.len() == chunk
                        && tx
                            .blocking_send(Prepared::from(std::mem::replace(&mut batch, Vec::with_capacity(chunk))))
                            .is_err()
                    {
                        return;
                    }
                }
                if !batch.is_empty() && tx.blocking_send(Prepared::from(batch)).is_err() {
                    return;
                }
            }
        });
        let mut summary = LoadSummary::default();
        while let Some(batch) = rx.recv().await {
            let sent = self.send_prepared(batch).await?;
            summary.add(&sent);
            bar.set_position(positions.iter().map(|p| p.load(Ordering::Relaxed)).sum());
            let rate = summary.read as f64 / started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!("{} records ({rate:.0}/s), {} new", summary.read, summary.sent));
        }
        reader.await?;
        bar.finish_and_clear();
        summary.seconds = started.elapsed().as_secs_f64();
        summary.log("load finished");
        Ok(summary)
    }
}
