//! The mart's consumer loops: raw products → clean → features, and
//! predictions → assignments → cluster profiles.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lab8_protocol::bus::{
    commit, consume, trim_acknowledged, Bus, CommitTarget, ConsumerOptions, Entry, Outcome, TableMode,
};
use lab8_protocol::keys::{MART_GROUP, MODEL_GROUP};
use lab8_protocol::messages::{ClusterProfile, Prediction, RawProduct};
use lab8_protocol::service::{Ops, Shutdown};
use lab8_protocol::Keys;

use crate::clean::{clean_batch, Verdict};
use crate::materialise::refresh_profiles;
use crate::MartError;

/// Mart settings.
#[derive(Debug, Clone)]
pub struct MartConfig {
    /// Consumer name in the groups (the pod name in the cluster).
    pub consumer: String,
    pub consumer_options: ConsumerOptions,
    /// Least time between two recomputations of the cluster profiles.
    pub profile_interval: Duration,
    /// Trim stream entries every consumer group has acknowledged (long-running mode).
    pub trim_acknowledged: bool,
}

/// What a drain (`--once`) did.
#[derive(Debug, Default, Clone)]
pub struct MartReport {
    pub raw_entries: u64,
    pub prediction_entries: u64,
    pub profiles: Vec<ClusterProfile>,
    pub products: usize,
    pub assigned: usize,
}

fn raw_target(keys: &Keys) -> CommitTarget {
    CommitTarget {
        source_stream: keys.raw_stream(),
        group: MART_GROUP.into(),
        output_stream: keys.features_stream(),
        table: keys.mart_products(),
        mode: TableMode::Unique,
        dead_letters: keys.dead_letter_stream(),
        rejection_counts: keys.mart_rejections(),
    }
}

fn predictions_target(keys: &Keys) -> CommitTarget {
    CommitTarget {
        source_stream: keys.predictions_stream(),
        group: MART_GROUP.into(),
        // Predictions produce no stream output; the key is never written.
        output_stream: keys.predictions_stream(),
        table: keys.mart_assignments(),
        mode: TableMode::Overwrite,
        dead_letters: keys.dead_letter_stream(),
        rejection_counts: keys.mart_rejections(),
    }
}

/// Cleans one batch of raw entries and commits features, products and dead
/// letters together with the acknowledgements.
pub async fn handle_raw_batch(bus: &Bus, ops: &Ops, entries: &[Entry]) -> Result<(), MartError> {
    let mut parsed: Vec<RawProduct> = Vec::with_capacity(entries.len());
    let mut slots: Vec<Result<usize, Outcome>> = Vec::with_capacity(entries.len());
    for entry in entries {
        let payload = entry.payload.as_deref().unwrap_or_default();
        let outcome = match entry.payload.as_deref().map(serde_json::from_slice::<RawProduct>) {
            None => Err(Outcome::rejected("", "missing_payload", payload)),
            Some(Err(_)) => Err(Outcome::rejected("", "malformed_json", payload)),
            Some(Ok(p)) if p.code.trim().is_empty() => Err(Outcome::rejected("", "missing_code", payload)),
            Some(Ok(p)) => {
                parsed.push(p);
                Ok(parsed.len() - 1)
            }
        };
        slots.push(outcome);
    }
    let verdicts = clean_batch(&parsed)?;
    let mut rejected: BTreeMap<String, u64> = BTreeMap::new();
    let mut outcomes = Vec::with_capacity(entries.len());
    for (entry, slot) in entries.iter().zip(slots) {
        let outcome = match slot {
            Err(outcome) => outcome,
            Ok(i) => match &verdicts[i] {
                Verdict::Clean { features, product } => Outcome::Accepted {
                    code: product.code.clone(),
                    output: Some(serde_json::to_string(features)?),
                    table_value: Some(serde_json::to_string(product)?),
                },
                Verdict::Rejected { reason } => {
                    Outcome::rejected(&parsed[i].code, reason.clone(), entry.payload.as_deref().unwrap_or_default())
                }
            },
        };
        if let Outcome::Rejected { reason, .. } = &outcome {
            *rejected.entry(reason.clone()).or_default() += 1;
        }
        outcomes.push((entry.id.clone(), outcome));
    }
    let mut conn = bus.conn.clone();
    let committed = commit(&mut conn, &raw_target(bus.keys()), &outcomes).await?;
    if committed.duplicates > 0 {
        *rejected.entry("duplicate_code".into()).or_default() += committed.duplicates;
    }
    let rejected_total: u64 = rejected.values().sum();
    let accepted = committed.applied.saturating_sub(rejected_total);
    let metrics = &ops.metrics;
    metrics.inc(
        "lab8_mart_raw_records_total",
        "Raw records processed by the mart",
        &[("outcome", "accepted")],
        accepted,
    );
    for (reason, n) in &rejected {
        metrics.inc(
            "lab8_mart_rejected_total",
            "Raw records rejected by the mart, by reason",
            &[("reason", reason)],
            *n,
        );
    }
    tracing::info!(
        batch = entries.len(),
        applied = committed.applied,
        accepted,
        rejected = rejected_total,
        rejected_by_reason = ?rejected,
        "mart: raw batch cleaned, feature rows sent to the model"
    );
    Ok(())
}

/// Stores one batch of predictions as assignments.
pub async fn handle_prediction_batch(bus: &Bus, ops: &Ops, entries: &[Entry]) -> Result<(), MartError> {
    let mut clusters: BTreeMap<u32, u64> = BTreeMap::new();
    let mut outcomes = Vec::with_capacity(entries.len());
    for entry in entries {
        let payload = entry.payload.as_deref().unwrap_or_default();
        let outcome = match serde_json::from_slice::<Prediction>(payload) {
            Ok(prediction) => {
                *clusters.entry(prediction.cluster).or_default() += 1;
                Outcome::Accepted {
                    code: prediction.code.clone(),
                    output: None,
                    table_value: Some(String::from_utf8_lossy(payload).into_owned()),
                }
            }
            Err(_) => Outcome::rejected("", "malformed_prediction", payload),
        };
        outcomes.push((entry.id.clone(), outcome));
    }
    let mut conn = bus.conn.clone();
    let committed = commit(&mut conn, &predictions_target(bus.keys()), &outcomes).await?;
    ops.metrics.inc("lab8_mart_predictions_total", "Predictions stored in the mart", &[], committed.applied);
    tracing::info!(batch = entries.len(), applied = committed.applied, clusters_assigned = ?clusters, "mart: predictions stored, products assigned to clusters");
    Ok(())
}

async fn refresh(bus: &Bus, ops: &Ops) -> Result<MartReport, MartError> {
    let mut conn = bus.conn.clone();
    let (tables, profiles) = refresh_profiles(&mut conn, bus.keys()).await?;
    let assigned = profiles.iter().map(|p| p.count as usize).sum();
    ops.metrics.set("lab8_mart_products", "Products in the mart", &[], tables.products.len() as f64);
    ops.metrics.set("lab8_mart_assigned_products", "Products in the mart with a cluster", &[], assigned as f64);
    for p in &profiles {
        ops.metrics.set(
            "lab8_mart_cluster_size",
            "Products per cluster",
            &[("cluster", &p.cluster.to_string())],
            p.count as f64,
        );
    }
    tracing::info!(
        products = tables.products.len(),
        assigned,
        clusters = profiles.len(),
        "mart: cluster profiles refreshed"
    );
    Ok(MartReport { products: tables.products.len(), assigned, profiles, ..Default::default() })
}

/// Trims what every consumer has acknowledged from the three data streams:
/// Redis holds the backlog, not the history (the mart's tables are the history).
async fn trim(bus: &Bus, ops: &Ops) {
    let keys = bus.keys();
    let mut conn = bus.conn.clone();
    for (stream, group) in [
        (keys.raw_stream(), MART_GROUP),
        (keys.features_stream(), MODEL_GROUP),
        (keys.predictions_stream(), MART_GROUP),
    ] {
        match trim_acknowledged(&mut conn, &stream, &[group]).await {
            Ok(0) => {}
            Ok(n) => {
                ops.metrics.inc(
                    "lab8_mart_trimmed_entries_total",
                    "Acknowledged stream entries trimmed",
                    &[("stream", &stream)],
                    n,
                );
                tracing::debug!(%stream, trimmed = n, "acknowledged entries trimmed");
            }
            Err(e) => tracing::warn!(%stream, error = %e, "trimming failed, will retry"),
        }
    }
}

/// Drains both streams, refreshes the profiles, returns what it did (`--once`).
pub async fn drain(bus: &Bus, config: &MartConfig, ops: &Ops) -> Result<MartReport, MartError> {
    let shutdown = Shutdown::default();
    let mut raw =
        bus.consumer(bus.keys().raw_stream(), MART_GROUP, &config.consumer, config.consumer_options.clone()).await?;
    let raw_entries =
        consume(&mut raw, &shutdown, true, async |batch: &[Entry]| handle_raw_batch(bus, ops, batch).await).await;
    let mut predictions = bus
        .consumer(bus.keys().predictions_stream(), MART_GROUP, &config.consumer, config.consumer_options.clone())
        .await?;
    let prediction_entries = consume(&mut predictions, &shutdown, true, async |batch: &[Entry]| {
        handle_prediction_batch(bus, ops, batch).await
    })
    .await;
    let report = refresh(bus, ops).await?;
    Ok(MartReport { raw_entries, prediction_entries, ..report })
}

/// Runs until `shutdown`: both consumers and a profile refresher.
pub async fn run(bus: Bus, config: MartConfig, ops: Ops, shutdown: Shutdown) -> Result<(), MartError> {
    let mut raw =
        bus.consumer(bus.keys().raw_stream(), MART_GROUP, &config.consumer, config.consumer_options.clone()).await?;
    let mut predictions = bus
        .consumer(bus.keys().predictions_stream(), MART_GROUP, &config.consumer, config.consumer_options.clone())
        .await?;
    ops.readiness.set(true);
    tracing::info!(consumer = %config.consumer, "mart consuming raw products and predictions");
    let dirty = Arc::new(AtomicBool::new(true));
    let raw_loop = {
        let (bus, ops, shutdown) = (bus.clone(), ops.clone(), shutdown.clone());
        async move {
            consume(&mut raw, &shutdown, false, async |batch: &[Entry]| handle_raw_batch(&bus, &ops, batch).await).await
        }
    };
    let prediction_loop = {
        let (bus, ops, shutdown, dirty) = (bus.clone(), ops.clone(), shutdown.clone(), dirty.clone());
        async move {
            consume(&mut predictions, &shutdown, false, async |batch: &[Entry]| {
                handle_prediction_batch(&bus, &ops, batch).await?;
                dirty.store(true, Ordering::SeqCst);
                Ok::<_, MartError>(())
            })
            .await
        }
    };
    let refresher = {
        let (bus, ops, shutdown) = (bus.clone(), ops.clone(), shutdown.clone());
        async move {
            while !shutdown.is_triggered() {
                tokio::select! {
                    _ = tokio::time::sleep(config.profile_interval) => {}
                    _ = shutdown.wait() => {}
                }
                if dirty.swap(false, Ordering::SeqCst) {
                    if let Err(e) = refresh(&bus, &ops).await {
                        dirty.store(true, Ordering::SeqCst);
                        tracing::warn!(error = %e, "profile refresh failed, will retry");
                    }
                }
                if config.trim_acknowledged {
                    trim(&bus, &ops).await;
                }
            }
        }
    };
    let (raw_handled, predictions_handled, ()) = tokio::join!(raw_loop, prediction_loop, refresher);
    tracing::info!(raw_handled, predictions_handled, "mart stopped");
    Ok(())
}
