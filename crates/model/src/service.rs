//! Scoring: feature rows from the mart → predictions back to the mart, and
//! the HTTP API (`POST /predict`, `GET /model`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use lab8_protocol::bus::{commit, consume, scan_hash, Bus, CommitTarget, ConsumerOptions, Entry, Outcome, TableMode};
use lab8_protocol::keys::MODEL_GROUP;
use lab8_protocol::messages::{FeatureRow, Prediction, ProductRow};
use lab8_protocol::service::{ops_router, HttpError, Ops, Shutdown};
use lab8_protocol::{FEATURES, N_FEATURES};
use redis::RedisError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::artifact::ModelArtifact;

fn target(bus: &Bus) -> CommitTarget {
    let keys = bus.keys();
    CommitTarget {
        source_stream: keys.features_stream(),
        group: MODEL_GROUP.into(),
        output_stream: keys.predictions_stream(),
        // The model keeps no table; the key is never written (no table values).
        table: keys.features_stream(),
        mode: TableMode::Overwrite,
        dead_letters: keys.dead_letter_stream(),
        rejection_counts: keys.mart_rejections(),
    }
}

/// Scores one batch of feature rows and commits the predictions.
pub async fn handle_feature_batch(
    bus: &Bus,
    model: &ModelArtifact,
    ops: &Ops,
    entries: &[Entry],
) -> Result<(), RedisError> {
    let mut clusters: BTreeMap<u32, u64> = BTreeMap::new();
    let mut outcomes = Vec::with_capacity(entries.len());
    for entry in entries {
        let payload = entry.payload.as_deref().unwrap_or_default();
        let outcome = match serde_json::from_slice::<FeatureRow>(payload) {
            Ok(row) if row.x.iter().all(|v| v.is_finite()) => {
                let (cluster, distance) = model.predict(&row.x);
                *clusters.entry(cluster).or_default() += 1;
                let prediction = Prediction {
                    code: row.code.clone(),
                    cluster,
                    distance,
                    model_version: model.model_version.clone(),
                };
                Outcome::Accepted {
                    code: row.code,
                    output: Some(serde_json::to_string(&prediction).expect("prediction serialises")),
                    table_value: None,
                }
            }
            Ok(row) => Outcome::rejected(&row.code, "non_finite_feature", payload),
            Err(_) => Outcome::rejected("", "malformed_feature_row", payload),
        };
        outcomes.push((entry.id.clone(), outcome));
    }
    let mut conn = bus.conn.clone();
    let committed = commit(&mut conn, &target(bus), &outcomes).await?;
    for (cluster, n) in &clusters {
        ops.metrics.inc(
            "lab8_model_predictions_total",
            "Feature rows scored, by cluster",
            &[("cluster", &cluster.to_string())],
            *n,
        );
    }
    tracing::info!(batch = entries.len(), applied = committed.applied, clusters_assigned = ?clusters, model_version = %model.model_version, "model: feature batch scored, predictions sent to the mart");
    Ok(())
}

/// Consumes feature rows until shutdown (or until drained, with `once`).
pub async fn score_stream(
    bus: &Bus,
    model: &ModelArtifact,
    ops: &Ops,
    consumer: &str,
    options: ConsumerOptions,
    shutdown: &Shutdown,
    once: bool,
) -> Result<u64, RedisError> {
    let mut features = bus.consumer(bus.keys().features_stream(), MODEL_GROUP, consumer, options).await?;
    Ok(consume(&mut features, shutdown, once, async |batch: &[Entry]| {
        handle_feature_batch(bus, model, ops, batch).await
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

/// Reads the features of one product from `{"energy_kj": …, "fat_g": …}`
/// (feature names) or the export's columns (`energy_100g`, `fat_100g`, …).
/// `fiber_g` may be left out (0, as in the mart's policy).
pub fn features_from_json(value: &Value) -> Result<[f64; N_FEATURES], String> {
    let Value::Object(object) = value else {
        return Err("expected a JSON object of nutrients".into());
    };
    let mut x = [0.0; N_FEATURES];
    for (slot, feature) in x.iter_mut().zip(FEATURES) {
        let value = object.get(feature.name).or_else(|| object.get(feature.off_column));
        *slot = match value {
            Some(Value::Number(n)) => {
                n.as_f64().filter(|v| v.is_finite()).ok_or_else(|| format!("{}: not a finite number", feature.name))?
            }
            Some(other) if !other.is_null() => return Err(format!("{}: expected a number, got {other}", feature.name)),
            _ if feature.name == "fiber_g" => 0.0,
            _ => return Err(format!("{}: missing", feature.name)),
        };
        if *slot < 0.0 {
            return Err(format!("{}: negative", feature.name));
        }
    }
    Ok(x)
}

#[derive(Clone)]
struct ApiState {
    model: Arc<ModelArtifact>,
    ops: Ops,
}

async fn predict(State(state): State<ApiState>, body: axum::body::Bytes) -> Result<Json<Value>, HttpError> {
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| HttpError(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}")))?;
    let score = |item: &Value| -> Result<PredictResponse, HttpError> {
        let x = features_from_json(item).map_err(|e| HttpError(StatusCode::UNPROCESSABLE_ENTITY, e))?;
        let (cluster, distance) = state.model.predict(&x);
        Ok(PredictResponse { cluster, distance, model_version: state.model.model_version.clone() })
    };
    let answer = match &value {
        Value::Array(items) => serde_json::to_value(items.iter().map(score).collect::<Result<Vec<_>, _>>()?),
        item => serde_json::to_value(score(item)?),
    };
    state.ops.metrics.inc("lab8_model_http_predictions_total", "POST /predict requests answered", &[], 1);
    Ok(Json(answer.expect("response serialises")))
}

/// The model's HTTP API with the ops endpoints.
pub fn router(model: Arc<ModelArtifact>, ops: Ops, max_body_bytes: usize) -> Router {
    let info = serde_json::json!({
        "model_version": model.model_version,
        "k": model.k,
        "features": model.features,
        "training": model.training,
    });
    Router::new()
        .route("/predict", post(predict))
        .route("/model", get(move || async move { Json(info) }))
        .with_state(ApiState { model, ops: ops.clone() })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .merge(ops_router(ops))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_by_name_or_column_with_fiber_optional() {
        let by_name = serde_json::json!({"energy_kj": 1000, "fat_g": 3, "saturated_fat_g": 1, "carbohydrates_g": 40, "sugars_g": 2, "proteins_g": 9, "salt_g": 1.1});
        let x = features_from_json(&by_name).unwrap();
        assert_eq!(x[5], 0.0);
        assert_eq!(x[7], 1.1);
        let by_column = serde_json::json!({"energy_100g": 1000, "fat_100g": 3, "saturated-fat_100g": 1, "carbohydrates_100g": 40, "sugars_100g": 2, "fiber_100g": 4, "proteins_100g": 9, "salt_100g": 1.1});
        assert_eq!(features_from_json(&by_column).unwrap()[5], 4.0);
        assert!(features_from_json(&serde_json::json!({"fat_g": 1})).unwrap_err().contains("energy_kj"));
        assert!(features_from_json(&serde_json::json!([1])).is_err());
        let mut negative = by_name.clone();
        negative["fat_g"] = serde_json::json!(-1);
        assert!(features_from_json(&negative).unwrap_err().contains("negative"));
        let mut text = by_name;
        text["fat_g"] = serde_json::json!("3");
        assert!(features_from_json(&text).is_err());
    }
}
