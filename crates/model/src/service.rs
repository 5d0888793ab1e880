//! Scoring: feature rows from the mart → predictions back to the mart, the
//! backfill that re-scores the mart's products when this model is newer than
//! the mart's current one, and the HTTP API (`POST /predict`, `GET /model`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use lab8_bus::maintenance::scan_hash_pages;
use lab8_bus::{commit, consume, Bus, CommitScript, CommitTarget, ConsumerOptions, Effects, Entry};
use lab8_protocol::keys::{MODEL_GROUP, PAYLOAD_FIELD};
use lab8_protocol::messages::{FeatureRow, ProductRow, Stage};
use lab8_protocol::{Reason, N_FEATURES};
use lab8_service::auth::{require_token, ApiAuth};
use lab8_service::{
    label, ops_router, CounterFamily, FloatGauge, GaugeFamily, HttpError, Metrics, Ops, PlainCounter, SecondsHistogram,
    Shutdown,
};
use redis::RedisError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::artifact::ModelArtifact;

/// What the model exports on `/metrics`.
#[derive(Clone, Default)]
pub struct ModelMetrics {
    predictions: CounterFamily,
    http_predictions: PlainCounter,
    backfill_scored: PlainCounter,
    backfill_remaining: FloatGauge,
    commit_seconds: SecondsHistogram,
    info: GaugeFamily,
}

impl ModelMetrics {
    pub fn register(metrics: &Metrics) -> Self {
        let this = Self { commit_seconds: SecondsHistogram::register_commit_seconds(metrics), ..Self::default() };
        metrics.register("lab8_model_predictions", "Feature rows scored, by cluster", this.predictions.clone());
        metrics.register("lab8_model_http_predictions", "POST /predict items scored", this.http_predictions.clone());
        metrics.register(
            "lab8_model_backfill_scored",
            "Products of the mart re-scored by the backfill",
            this.backfill_scored.clone(),
        );
        metrics.register(
            "lab8_model_backfill_remaining",
            "Products of the mart this model has yet to assign (0 when it is the mart's current model)",
            this.backfill_remaining.clone(),
        );
        metrics.register("lab8_model_info", "The model version this process serves (1)", this.info.clone());
        this
    }
}

fn target(bus: &Bus) -> CommitTarget {
    let keys = bus.keys();
    CommitTarget {
        stream: keys.features_stream(),
        group: MODEL_GROUP.into(),
        stage: Stage::Model,
        dead_letters: keys.dead_letter_stream(),
        rejections: keys.rejections(Stage::Model),
        output: Some(keys.predictions_stream()),
        table: None,
        context: String::new(),
        script: CommitScript::standard(),
    }
}

/// Scores one batch of feature rows and commits the predictions.
pub async fn handle_feature_batch(
    bus: &Bus,
    model: &ModelArtifact,
    metrics: &ModelMetrics,
    entries: &[Entry],
) -> Result<(), RedisError> {
    let mut clusters: BTreeMap<u32, u64> = BTreeMap::new();
    let mut outcomes = Vec::with_capacity(entries.len());
    for entry in entries {
        let payload = entry.payload.as_deref().unwrap_or_default();
        let effects = match serde_json::from_slice::<FeatureRow>(payload) {
            Ok(row) if row.x.iter().all(|v| v.is_finite()) => {
                let prediction = model.prediction(&row.code, &row.x, &row.version);
                *clusters.entry(prediction.cluster).or_default() += 1;
                Effects::accepted(&entry.id, &row.code)
                    .with_output(serde_json::to_string(&prediction).expect("prediction serialises"))
            }
            Ok(row) => Effects::rejected(&entry.id, &row.code, Reason::NonFiniteFeature, payload),
            Err(_) => Effects::rejected(&entry.id, "", Reason::MalformedFeatureRow, payload),
        };
        outcomes.push(effects);
    }
    let mut conn = bus.conn();
    let started = std::time::Instant::now();
    let committed = commit(&mut conn, &target(bus), &outcomes).await?;
    metrics.commit_seconds.observe(&label("stream", bus.keys().features_stream()), started.elapsed());
    for (cluster, n) in &clusters {
        metrics.predictions.get_or_create(&label("cluster", cluster)).inc_by(*n);
    }
    tracing::info!(batch = entries.len(), applied = committed.applied, clusters_assigned = ?clusters, model_version = %model.model_version, "model: feature batch scored, predictions sent to the mart");
    Ok(())
}

/// Announces the model, then consumes feature rows until shutdown (or until
/// drained, with `once`).
pub async fn score_stream(
    bus: &Bus,
    model: &ModelArtifact,
    metrics: &ModelMetrics,
    consumer: &str,
    options: ConsumerOptions,
    shutdown: &Shutdown,
    once: bool,
) -> Result<u64, RedisError> {
    announce(bus, model).await?;
    metrics.info.get_or_create(&label("model_version", &model.model_version)).set(1.0);
    let mut features = bus.consumer(bus.keys().features_stream(), MODEL_GROUP, consumer, options).await?;
    Ok(consume(&mut features, shutdown, once, async |batch: &[Entry]| {
        handle_feature_batch(bus, model, metrics, batch).await
    })
    .await)
}

/// Announces this model to the mart: the newest announced model is the one
/// the mart moves to (after the backfill). Called when a scorer starts.
pub async fn announce(bus: &Bus, model: &ModelArtifact) -> Result<(), RedisError> {
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
    let mut conn = bus.conn();
    // NX: the time of the first start counts, so a pod of an older model that
    // restarts does not become the newest; a retired model (no longer in the
    // set) that starts again does, which is a rollback.
    redis::cmd("ZADD")
        .arg(bus.keys().models())
        .arg("NX")
        .arg(now_ms as u64)
        .arg(&model.model_version)
        .exec_async(&mut conn)
        .await
}

/// Products the backfill reads per page.
const BACKFILL_PAGE: usize = 1000;

/// One backfill pass: when the mart's current model is another one, scores
/// every product of the mart this model has not assigned yet and sends the
/// predictions to the mart (a crash loses nothing: the next pass scores
/// what is still missing). One replica per model version works at a time
/// (a lock with a lease). Returns the products scored.
pub async fn backfill(bus: &Bus, model: &ModelArtifact, metrics: &ModelMetrics) -> Result<u64, RedisError> {
    let keys = bus.keys();
    let mut conn = bus.conn();
    let current: Option<String> = redis::cmd("GET").arg(keys.mart_current_model()).query_async(&mut conn).await?;
    let Some(current) = current.filter(|c| *c != model.model_version) else {
        metrics.backfill_remaining.set(0.0);
        return Ok(0);
    };
    // Only the newest announced model backfills: an older one still running
    // during a rollout would re-score everything for the mart to drop.
    let newest: Vec<String> = redis::cmd("ZRANGE").arg(keys.models()).arg(-1).arg(-1).query_async(&mut conn).await?;
    if newest.first() != Some(&model.model_version) {
        metrics.backfill_remaining.set(0.0);
        return Ok(0);
    }
    let assignments = keys.assignments_of(&model.model_version, Some(&current));
    let lock = keys.backfill_lock(&model.model_version);
    let lease_ms = 30_000;
    let me = format!("{}:{}", std::process::id(), now_nanos());
    let locked: Option<String> =
        redis::cmd("SET").arg(&lock).arg(&me).arg("NX").arg("PX").arg(lease_ms).query_async(&mut conn).await?;
    if locked.is_none() {
        return Ok(0);
    }
    let products: u64 = redis::cmd("HLEN").arg(keys.mart_products()).query_async(&mut conn).await?;
    let assigned: u64 = redis::cmd("HLEN").arg(&assignments).query_async(&mut conn).await?;
    tracing::info!(model_version = %model.model_version, current = %current, products, assigned, "model: backfill started");
    let (mut scored, mut seen, mut cursor) = (0u64, 0u64, 0u64);
    loop {
        let (next, page): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
            .arg(keys.mart_products())
            .arg(cursor)
            .arg("COUNT")
            .arg(BACKFILL_PAGE)
            .query_async(&mut conn)
            .await?;
        if !page.is_empty() {
            let codes: Vec<&str> = page.iter().map(|(code, _)| code.as_str()).collect();
            let done: Vec<bool> = redis::cmd("HMGET")
                .arg(&assignments)
                .arg(&codes)
                .query_async::<Vec<Option<String>>>(&mut conn)
                .await?
                .into_iter()
                .map(|a| a.is_some())
                .collect();
            let mut pipe = redis::pipe();
            for ((_, json), done) in page.iter().zip(done) {
                if done {
                    continue;
                }
                let Ok(row) = serde_json::from_str::<ProductRow>(json) else { continue };
                let prediction = model.prediction(&row.code, &row.x, &row.version);
                let payload = serde_json::to_string(&prediction).expect("prediction serialises");
                pipe.xadd(keys.predictions_stream(), "*", &[(PAYLOAD_FIELD, payload)]).ignore();
                scored += 1;
            }
            pipe.pexpire(&lock, lease_ms).ignore();
            pipe.exec_async(&mut conn).await?;
            seen += page.len() as u64;
            metrics.backfill_remaining.set(products.saturating_sub(assigned + scored) as f64);
            if seen % 50_000 < page.len() as u64 {
                tracing::info!(model_version = %model.model_version, seen, products, scored, "model: backfill progress");
            }
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    metrics.backfill_scored.inc_by(scored);
    let _: () = redis::cmd("DEL").arg(&lock).query_async(&mut conn).await?;
    tracing::info!(model_version = %model.model_version, products = seen, scored, "model: backfill pass done");
    Ok(scored)
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()
}

/// Backfill passes every `interval` until shutdown (each is a no-op while
/// this model is the mart's current one).
pub async fn backfill_loop(
    bus: &Bus,
    model: &ModelArtifact,
    metrics: &ModelMetrics,
    interval: std::time::Duration,
    shutdown: &Shutdown,
) {
    while !shutdown.is_triggered() {
        if let Err(e) = backfill(bus, model, metrics).await {
            tracing::warn!(error = %e, "backfill pass failed, will retry");
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait() => {}
        }
    }
}

/// The training matrix: the clean features of every product in the mart's
/// table, ordered by product code so that training is deterministic (KMeans
/// initialisation depends on row order; HSCAN order does not stay fixed).
pub async fn training_rows(bus: &Bus) -> Result<Vec<[f64; N_FEATURES]>, TrainingDataError> {
    /// The part of a [`ProductRow`] training reads.
    #[derive(serde::Deserialize)]
    struct TrainingRow {
        code: String,
        x: [f64; N_FEATURES],
    }
    let mut conn = bus.conn();
    let mut rows: Vec<(String, [f64; N_FEATURES])> = Vec::new();
    scan_hash_pages(&mut conn, &bus.keys().mart_products(), |page| {
        for (_, json) in page {
            let row: TrainingRow = serde_json::from_str(&json)?;
            rows.push((row.code, row.x));
        }
        Ok::<_, TrainingDataError>(())
    })
    .await?;
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(rows.into_iter().map(|(_, x)| x).collect())
}

#[derive(Debug, thiserror::Error)]
pub enum TrainingDataError {
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    #[error("corrupt row in the mart's product table: {0}")]
    Json(#[from] serde_json::Error),
}

/// Answer to `POST /predict`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PredictResponse {
    pub cluster: u32,
    pub distance: f64,
    pub model_version: String,
}

#[derive(Clone)]
struct ApiState {
    model: Arc<ModelArtifact>,
    metrics: ModelMetrics,
}

/// A `/predict` item the cleaning policy refused, with its reason.
fn refused(reason: Reason) -> HttpError {
    HttpError(StatusCode::UNPROCESSABLE_ENTITY, format!("refused by the cleaning policy: {reason}"))
}

async fn predict(State(state): State<ApiState>, body: axum::body::Bytes) -> Result<Json<Value>, HttpError> {
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| HttpError(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}")))?;
    // The mart's policy, so /predict scores exactly what the mart would keep.
    let score = |item: &Value| -> Result<PredictResponse, HttpError> {
        let cleaned = lab8_policy::clean(&lab8_policy::nutrients_from_json(item).map_err(refused)?).map_err(refused)?;
        let (cluster, distance) = state.model.predict(&cleaned.x);
        Ok(PredictResponse { cluster, distance, model_version: state.model.model_version.clone() })
    };
    let answer = match &value {
        Value::Array(items) => serde_json::to_value(items.iter().map(score).collect::<Result<Vec<_>, _>>()?),
        item => serde_json::to_value(score(item)?),
    };
    let items = if let Value::Array(items) = &value { items.len() } else { 1 };
    state.metrics.http_predictions.inc_by(items as u64);
    Ok(Json(answer.expect("response serialises")))
}

/// The model's HTTP API: `POST /predict` behind `auth`; `GET /model` and
/// the ops endpoints open.
pub fn router(
    model: Arc<ModelArtifact>,
    ops: Ops,
    metrics: ModelMetrics,
    max_body_bytes: usize,
    auth: ApiAuth,
) -> Router {
    let info = serde_json::json!({
        "model_version": model.model_version,
        "k": model.k,
        "features": model.features,
        "training": model.training,
    });
    let predict = Router::new()
        .route("/predict", post(predict))
        .with_state(ApiState { model, metrics })
        .layer(DefaultBodyLimit::max(max_body_bytes));
    require_token(predict, auth).route("/model", get(move || async move { Json(info) })).merge(ops_router(ops))
}
