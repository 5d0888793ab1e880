//! The mart's consumer loops: raw products → clean → features, and
//! predictions → assignments → cluster profiles.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use lab8_bus::maintenance::{group_backlog, trim_acknowledged};
use lab8_bus::{commit, consume, Bus, CommitTarget, ConsumerOptions, Effects, Entry};
use lab8_protocol::keys::{MART_GROUP, MODEL_GROUP};
use lab8_protocol::messages::{ClusterProfile, Prediction, RawProduct, Stage};
use lab8_protocol::{Keys, Reason};
use lab8_service::{
    label, CounterFamily, FloatGauge, GaugeFamily, Labels, Metrics, Ops, PlainCounter, SecondsHistogram, Shutdown,
};

use crate::clean::{clean_batch, Verdict};
use crate::materialise::{current_profiles, publish_profiles, switch_model, MART_COMMIT};
use crate::MartError;

/// Mart settings.
#[derive(Debug, Clone)]
pub struct MartConfig {
    /// Consumer name in the groups (the pod name in the cluster).
    pub consumer: String,
    pub consumer_options: ConsumerOptions,
    /// Time between two refreshes of the cluster profiles (and model switch checks).
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
    /// The current model ('' when none).
    pub model_version: String,
}

impl MartReport {
    fn log_refresh(&self) {
        tracing::info!(
            products = self.products,
            assigned = self.assigned,
            clusters = self.profiles.len(),
            model_version = %self.model_version,
            "mart: cluster profiles refreshed"
        );
    }
}

/// What the mart exports on `/metrics`.
#[derive(Clone, Default)]
pub struct MartMetrics {
    raw_records: CounterFamily,
    rejected: CounterFamily,
    predictions: PlainCounter,
    ignored_predictions: PlainCounter,
    backfill: GaugeFamily,
    products: FloatGauge,
    assigned: FloatGauge,
    cluster_size: GaugeFamily,
    trimmed: CounterFamily,
    commit_seconds: SecondsHistogram,
    backlog: GaugeFamily,
    pending: GaugeFamily,
    current_model: GaugeFamily,
}

impl MartMetrics {
    /// The mart's metrics, registered for `/metrics`.
    pub fn register(metrics: &Metrics) -> Self {
        let this = Self { commit_seconds: SecondsHistogram::register_commit_seconds(metrics), ..Self::default() };
        metrics.register("lab8_mart_raw_records", "Raw records processed by the mart", this.raw_records.clone());
        metrics.register("lab8_mart_rejected", "Raw records rejected by the mart, by reason", this.rejected.clone());
        metrics.register("lab8_mart_predictions", "Predictions stored in the mart", this.predictions.clone());
        metrics.register(
            "lab8_mart_ignored_predictions",
            "Predictions ignored: content since replaced, or a retired model",
            this.ignored_predictions.clone(),
        );
        metrics.register(
            "lab8_mart_model_backfill",
            "Products the newest model has assigned (state=assigned) and must reach (state=needed) before the mart switches to it",
            this.backfill.clone(),
        );
        metrics.register("lab8_mart_products", "Products in the mart", this.products.clone());
        metrics.register("lab8_mart_assigned_products", "Products in the mart with a cluster", this.assigned.clone());
        metrics.register("lab8_mart_cluster_size", "Products per cluster", this.cluster_size.clone());
        metrics.register("lab8_mart_trimmed_entries", "Acknowledged stream entries trimmed", this.trimmed.clone());
        metrics.register(
            "lab8_stream_backlog",
            "Entries of a stream not yet delivered to its consumer group",
            this.backlog.clone(),
        );
        metrics.register(
            "lab8_stream_pending",
            "Entries delivered to a consumer group and not yet acknowledged",
            this.pending.clone(),
        );
        metrics.register(
            "lab8_mart_current_model",
            "The model version the mart shows (1 for the current one)",
            this.current_model.clone(),
        );
        this
    }
}

/// The three data streams and the group that consumes each.
pub(crate) fn consumer_groups(keys: &Keys) -> [(String, &'static str); 3] {
    [(keys.raw_stream(), MART_GROUP), (keys.features_stream(), MODEL_GROUP), (keys.predictions_stream(), MART_GROUP)]
}

fn stream_labels(stream: &str, group: &str) -> Labels {
    vec![("stream".into(), stream.into()), ("group".into(), group.into())]
}

fn raw_target(keys: &Keys) -> CommitTarget {
    CommitTarget {
        stream: keys.raw_stream(),
        group: MART_GROUP.into(),
        stage: Stage::Mart,
        dead_letters: keys.dead_letter_stream(),
        rejections: keys.rejections(Stage::Mart),
        output: Some(keys.features_stream()),
        table: None,
        context: keys.script_context(),
        script: &MART_COMMIT,
    }
}

fn predictions_target(keys: &Keys) -> CommitTarget {
    CommitTarget {
        stream: keys.predictions_stream(),
        group: MART_GROUP.into(),
        stage: Stage::Mart,
        dead_letters: keys.dead_letter_stream(),
        rejections: keys.rejections(Stage::Mart),
        output: None,
        table: None,
        context: keys.script_context(),
        script: &MART_COMMIT,
    }
}

/// Cleans one batch of raw entries and commits features, products and dead
/// letters together with the acknowledgements. A product already in the
/// table in the same version changes nothing, in an older one is ignored
/// (both counted in `lab8:mart:ignored`), in a newer one replaces it.
pub async fn handle_raw_batch(bus: &Bus, metrics: &MartMetrics, entries: &[Entry]) -> Result<(), MartError> {
    let mut parsed: Vec<RawProduct> = Vec::with_capacity(entries.len());
    // Each entry is either a product to clean (its index in `parsed`) or
    // already rejected before cleaning.
    let mut slots: Vec<Result<usize, Box<Effects>>> = Vec::with_capacity(entries.len());
    for entry in entries {
        let payload = entry.payload.as_deref().unwrap_or_default();
        let reject = |reason| Err(Box::new(Effects::rejected(&entry.id, "", reason, payload)));
        let slot = match entry.payload.as_deref().map(serde_json::from_slice::<RawProduct>) {
            None => reject(Reason::MissingPayload),
            Some(Err(_)) => reject(Reason::MalformedJson),
            Some(Ok(p)) if p.code.trim().is_empty() => reject(Reason::MissingCode),
            Some(Ok(p)) => {
                parsed.push(p);
                Ok(parsed.len() - 1)
            }
        };
        slots.push(slot);
    }
    let verdicts = clean_batch(&parsed)?;
    let mut rejected: BTreeMap<Reason, u64> = BTreeMap::new();
    let mut outcomes = Vec::with_capacity(entries.len());
    for (entry, slot) in entries.iter().zip(slots) {
        let effects = match slot {
            Err(effects) => *effects,
            Ok(i) => match &verdicts[i] {
                Verdict::Clean { features, product } => Effects::accepted(&entry.id, &product.code)
                    .with_effect("upsert", serde_json::to_string(product)?)
                    .with_output(serde_json::to_string(features)?),
                Verdict::Rejected { reason } => {
                    Effects::rejected(&entry.id, &parsed[i].code, *reason, entry.payload.as_deref().unwrap_or_default())
                }
            },
        };
        if let Some((reason, _)) = &effects.rejection {
            *rejected.entry(*reason).or_default() += 1;
        }
        outcomes.push(effects);
    }
    let mut conn = bus.conn();
    let started = Instant::now();
    let committed = commit(&mut conn, &raw_target(bus.keys()), &outcomes).await?;
    metrics.commit_seconds.observe(&label("stream", bus.keys().raw_stream()), started.elapsed());
    let rejected_total: u64 = rejected.values().sum();
    let accepted = committed.applied.saturating_sub(rejected_total + committed.ignored);
    metrics.raw_records.get_or_create(&label("outcome", "accepted")).inc_by(accepted);
    metrics.raw_records.get_or_create(&label("outcome", "ignored")).inc_by(committed.ignored);
    for (reason, n) in &rejected {
        metrics.rejected.get_or_create(&label("reason", reason)).inc_by(*n);
    }
    tracing::info!(
        batch = entries.len(),
        applied = committed.applied,
        accepted,
        unchanged_or_stale = committed.ignored,
        rejected = rejected_total,
        rejected_by_reason = ?rejected,
        "mart: raw batch cleaned, feature rows sent to the model"
    );
    Ok(())
}

/// Stores one batch of predictions as assignments under their model, moving
/// each product's contribution to the cluster aggregates in the same commit.
pub async fn handle_prediction_batch(bus: &Bus, metrics: &MartMetrics, entries: &[Entry]) -> Result<(), MartError> {
    let mut clusters: BTreeMap<u32, u64> = BTreeMap::new();
    let mut outcomes = Vec::with_capacity(entries.len());
    for entry in entries {
        let payload = entry.payload.as_deref().unwrap_or_default();
        let effects = match serde_json::from_slice::<Prediction>(payload) {
            Ok(prediction) => {
                *clusters.entry(prediction.cluster).or_default() += 1;
                Effects::accepted(&entry.id, &prediction.code)
                    .with_effect("assign", String::from_utf8_lossy(payload).into_owned())
            }
            Err(_) => Effects::rejected(&entry.id, "", Reason::MalformedPrediction, payload),
        };
        outcomes.push(effects);
    }
    let mut conn = bus.conn();
    let started = Instant::now();
    let committed = commit(&mut conn, &predictions_target(bus.keys()), &outcomes).await?;
    metrics.commit_seconds.observe(&label("stream", bus.keys().predictions_stream()), started.elapsed());
    metrics.predictions.inc_by(committed.applied - committed.ignored);
    metrics.ignored_predictions.inc_by(committed.ignored);
    tracing::info!(batch = entries.len(), applied = committed.applied, ignored = committed.ignored, clusters_assigned = ?clusters, "mart: predictions stored, products assigned to clusters");
    Ok(())
}

/// Moves to the newest model when it has caught up, then republishes the
/// current model's profiles from its aggregates (O(k) reads).
async fn refresh(bus: &Bus, metrics: &MartMetrics) -> Result<MartReport, MartError> {
    let mut conn = bus.conn();
    let keys = bus.keys();
    let switch = switch_model(&mut conn, keys).await?;
    metrics.backfill.get_or_create(&label("state", "assigned")).set(switch.assigned as f64);
    metrics.backfill.get_or_create(&label("state", "needed")).set(switch.needed as f64);
    match switch.state.as_str() {
        "switched" => {
            tracing::info!(model_version = %switch.current, assigned = switch.assigned, "mart: switched to the newest model; older models retired")
        }
        "backfilling" => {
            tracing::info!(current = %switch.current, assigned = switch.assigned, needed = switch.needed, "mart: newest model backfilling")
        }
        _ => {}
    }
    let profiles = current_profiles(&mut conn, keys).await?;
    publish_profiles(&mut conn, keys, &profiles).await?;
    let products: u64 = redis::cmd("HLEN").arg(keys.mart_products()).query_async(&mut conn).await?;
    let assigned = profiles.iter().map(|p| p.count as usize).sum();
    metrics.products.set(products as f64);
    metrics.assigned.set(assigned as f64);
    // Cleared first: a retired model's clusters and version leave the series.
    metrics.cluster_size.clear();
    for p in &profiles {
        metrics.cluster_size.get_or_create(&label("cluster", p.cluster)).set(p.count as f64);
    }
    metrics.current_model.clear();
    if !switch.current.is_empty() {
        metrics.current_model.get_or_create(&label("model_version", &switch.current)).set(1.0);
    }
    Ok(MartReport {
        products: products as usize,
        assigned,
        profiles,
        model_version: switch.current,
        ..Default::default()
    })
}

/// Exports each consumer group's backlog and pending count, then (when
/// `trim_acknowledged`) trims what every consumer has acknowledged from the
/// three data streams: Redis holds the backlog, not the history (the mart's
/// tables are the history).
async fn maintain(bus: &Bus, metrics: &MartMetrics, trim_acknowledged_entries: bool) {
    let mut conn = bus.conn();
    for (stream, group) in consumer_groups(bus.keys()) {
        match group_backlog(&mut conn, &stream, group).await {
            Ok(backlog) => {
                let labels = stream_labels(&stream, group);
                match backlog.lag {
                    Some(lag) => {
                        metrics.backlog.get_or_create(&labels).set(lag as f64);
                    }
                    // Unknown: no sample rather than a false 0.
                    None => {
                        metrics.backlog.remove(&labels);
                    }
                }
                metrics.pending.get_or_create(&labels).set(backlog.pending as f64);
            }
            Err(e) => tracing::warn!(%stream, error = %e, "reading the group's backlog failed, will retry"),
        }
        if !trim_acknowledged_entries {
            continue;
        }
        match trim_acknowledged(&mut conn, &stream, &[group]).await {
            Ok(0) => {}
            Ok(n) => {
                metrics.trimmed.get_or_create(&label("stream", &stream)).inc_by(n);
                tracing::debug!(%stream, trimmed = n, "acknowledged entries trimmed");
            }
            Err(e) => tracing::warn!(%stream, error = %e, "trimming failed, will retry"),
        }
    }
}

/// Drains both streams, refreshes the profiles, returns what it did (`--once`).
pub async fn drain(bus: &Bus, config: &MartConfig, metrics: &MartMetrics) -> Result<MartReport, MartError> {
    let shutdown = Shutdown::default();
    let mut raw =
        bus.consumer(bus.keys().raw_stream(), MART_GROUP, &config.consumer, config.consumer_options.clone()).await?;
    let raw_entries =
        consume(&mut raw, &shutdown, true, async |batch: &[Entry]| handle_raw_batch(bus, metrics, batch).await).await;
    let mut predictions = bus
        .consumer(bus.keys().predictions_stream(), MART_GROUP, &config.consumer, config.consumer_options.clone())
        .await?;
    let prediction_entries = consume(&mut predictions, &shutdown, true, async |batch: &[Entry]| {
        handle_prediction_batch(bus, metrics, batch).await
    })
    .await;
    let report = refresh(bus, metrics).await?;
    report.log_refresh();
    Ok(MartReport { raw_entries, prediction_entries, ..report })
}

/// Runs until `shutdown`: both consumers and a profile refresher.
pub async fn run(bus: Bus, config: MartConfig, ops: Ops, shutdown: Shutdown) -> Result<(), MartError> {
    let metrics = MartMetrics::register(&ops.metrics);
    let mut raw =
        bus.consumer(bus.keys().raw_stream(), MART_GROUP, &config.consumer, config.consumer_options.clone()).await?;
    let mut predictions = bus
        .consumer(bus.keys().predictions_stream(), MART_GROUP, &config.consumer, config.consumer_options.clone())
        .await?;
    ops.readiness.set(true);
    tracing::info!(consumer = %config.consumer, "mart consuming raw products and predictions");
    let raw_loop = {
        let (bus, metrics, shutdown) = (bus.clone(), metrics.clone(), shutdown.clone());
        async move {
            consume(&mut raw, &shutdown, false, async |batch: &[Entry]| handle_raw_batch(&bus, &metrics, batch).await)
                .await
        }
    };
    let prediction_loop = {
        let (bus, metrics, shutdown) = (bus.clone(), metrics.clone(), shutdown.clone());
        async move {
            consume(&mut predictions, &shutdown, false, async |batch: &[Entry]| {
                handle_prediction_batch(&bus, &metrics, batch).await
            })
            .await
        }
    };
    let refresher = {
        let (bus, shutdown) = (bus.clone(), shutdown.clone());
        async move {
            // Logged when something changed, so the log is not a refresh every interval.
            let mut shown: Option<(usize, usize, String)> = None;
            while !shutdown.is_triggered() {
                tokio::select! {
                    _ = tokio::time::sleep(config.profile_interval) => {}
                    _ = shutdown.wait() => {}
                }
                // O(k) reads: cheap enough to run every interval.
                match refresh(&bus, &metrics).await {
                    Ok(report) => {
                        let now = Some((report.products, report.assigned, report.model_version.clone()));
                        if now != shown {
                            report.log_refresh();
                            shown = now;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "profile refresh failed, will retry"),
                }
                maintain(&bus, &metrics, config.trim_acknowledged).await;
            }
        }
    };
    let (raw_handled, predictions_handled, ()) = tokio::join!(raw_loop, prediction_loop, refresher);
    tracing::info!(raw_handled, predictions_handled, "mart stopped");
    Ok(())
}
