//! Scoring: feature rows from the mart → predictions back to the mart, and
//! the HTTP API (`POST /predict`, `GET /model`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use lab8_bus::maintenance::scan_hash;
use lab8_bus::{commit, consume, Bus, CommitTarget, ConsumerOptions, Effects, Entry};
use lab8_protocol::keys::MODEL_GROUP;
use lab8_protocol::messages::{FeatureRow, Prediction, ProductRow, Stage};
use lab8_protocol::{Reason, N_FEATURES};
use lab8_service::{label, ops_router, CounterFamily, HttpError, Metrics, Ops, PlainCounter, Shutdown};
use redis::RedisError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::artifact::ModelArtifact;

/// What the model exports on `/metrics`.
#[derive(Clone, Default)]
pub struct ModelMetrics {
    predictions: CounterFamily,
    http_predictions: PlainCounter,
}

impl ModelMetrics {
    pub fn register(metrics: &Metrics) -> Self {
        let this = Self::default();
        metrics.register("lab8_model_predictions", "Feature rows scored, by cluster", this.predictions.clone());
        metrics.register("lab8_model_http_predictions", "POST /predict items scored", this.http_predictions.clone());
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
                let (cluster, distance) = model.predict(&row.x);
                *clusters.entry(cluster).or_default() += 1;
                let prediction = Prediction {
                    code: row.code.clone(),
                    cluster,
                    distance,
                    model_version: model.model_version.clone(),
                };
                Effects::accepted(&entry.id, &row.code)
                    .with_output(serde_json::to_string(&prediction).expect("prediction serialises"))
            }
            Ok(row) => Effects::rejected(&entry.id, &row.code, Reason::NonFiniteFeature, payload),
            Err(_) => Effects::rejected(&entry.id, "", Reason::MalformedFeatureRow, payload),
        };
        outcomes.push(effects);
    }
    let mut conn = bus.conn.clone();
    let committed = commit(&mut conn, &target(bus), &outcomes).await?;
    for (cluster, n) in &clusters {
        metrics.predictions.get_or_create(&label("cluster", cluster)).inc_by(*n);
    }
    tracing::info!(batch = entries.len(), applied = committed.applied, clusters_assigned = ?clusters, model_version = %model.model_version, "model: feature batch scored, predictions sent to the mart");
    Ok(())
}

/// Consumes feature rows until shutdown (or until drained, with `once`).
pub async fn score_stream(
    bus: &Bus,
    model: &ModelArtifact,
    metrics: &ModelMetrics,
    consumer: &str,
    options: ConsumerOptions,
    shutdown: &Shutdown,
    once: bool,
) -> Result<u64, RedisError> {
    let mut features = bus.consumer(bus.keys().features_stream(), MODEL_GROUP, consumer, options).await?;
    Ok(consume(&mut features, shutdown, once, async |batch: &[Entry]| {
        handle_feature_batch(bus, model, metrics, batch).await
    })
    .await)
}

/// The training matrix: the clean features of every product in the mart's
/// table, ordered by product code so that training is deterministic (KMeans
/// initialisation depends on row order; HSCAN order does not stay fixed).
pub async fn training_rows(bus: &Bus) -> Result<Vec<[f64; N_FEATURES]>, TrainingDataError> {
    let mut conn = bus.conn.clone();
    let mut products: Vec<ProductRow> = scan_hash(&mut conn, &bus.keys().mart_products())
        .await?
        .into_iter()
        .map(|(_, json)| serde_json::from_str(&json))
        .collect::<Result<_, _>>()?;
    products.sort_by(|a, b| a.code.cmp(&b.code));
    Ok(products.into_iter().map(|p| p.x).collect())
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

/// The model's HTTP API with the ops endpoints.
pub fn router(model: Arc<ModelArtifact>, ops: Ops, metrics: ModelMetrics, max_body_bytes: usize) -> Router {
    let info = serde_json::json!({
        "model_version": model.model_version,
        "k": model.k,
        "features": model.features,
        "training": model.training,
    });
    Router::new()
        .route("/predict", post(predict))
        .route("/model", get(move || async move { Json(info) }))
        .with_state(ApiState { model, metrics })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .merge(ops_router(ops))
}
