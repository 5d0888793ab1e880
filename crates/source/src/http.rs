//! Live ingest: `POST /products` takes one product or a batch (JSON, the
//! export's flat layout or the protocol's), plus the ops endpoints.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use lab8_service::auth::{require_token, ApiAuth};
use lab8_service::{label, ops_router, CounterFamily, HttpError, Metrics, Ops};
use serde::Serialize;

use crate::input::records_from_json_body;
use crate::loader::Loader;

/// Default largest accepted body (`MAX_BODY_BYTES`).
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// What the ingest API exports.
#[derive(Clone, Default)]
pub struct SourceMetrics {
    /// `lab8_source_records_total{outcome="sent"|"duplicate"|"stale"}`
    records: CounterFamily,
    /// `lab8_source_rejected_total{reason}`
    rejected: CounterFamily,
}

impl SourceMetrics {
    pub fn register(metrics: &Metrics) -> Self {
        let this = Self::default();
        metrics.register("lab8_source_records", "Records received over HTTP", this.records.clone());
        metrics.register("lab8_source_rejected", "Records rejected by the source, by reason", this.rejected.clone());
        this
    }
}

#[derive(Clone)]
struct AppState {
    /// Cloned per request: its connection is multiplexed, so requests do not
    /// wait for each other (the dedupe script is atomic in Redis).
    loader: Loader,
    metrics: SourceMetrics,
}

/// Answer to a `POST /products`.
#[derive(Debug, Serialize)]
pub struct IngestResponse {
    pub received: u64,
    pub sent: u64,
    pub duplicates: u64,
    pub stale: u64,
    /// Index in the batch and reason of each rejected item.
    pub rejected: Vec<RejectedItem>,
}

#[derive(Debug, Serialize)]
pub struct RejectedItem {
    pub location: String,
    pub reason: String,
}

async fn ingest(State(state): State<AppState>, body: Bytes) -> Result<Json<IngestResponse>, HttpError> {
    let records = records_from_json_body(&body).map_err(|e| HttpError(StatusCode::BAD_REQUEST, e))?;
    let rejected: Vec<RejectedItem> = records
        .iter()
        .filter_map(|r| r.as_ref().err())
        .map(|r| RejectedItem { location: r.location.clone(), reason: r.reason.wire_name() })
        .collect();
    let summary = {
        let mut loader = state.loader.clone();
        loader.send(records).await.map_err(|e| {
            tracing::error!(error = %e, "ingest failed: Redis unavailable");
            HttpError(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable, retry later".into())
        })?
    };
    let metrics = &state.metrics;
    metrics.records.get_or_create(&label("outcome", "sent")).inc_by(summary.sent);
    metrics.records.get_or_create(&label("outcome", "duplicate")).inc_by(summary.duplicates);
    metrics.records.get_or_create(&label("outcome", "stale")).inc_by(summary.stale);
    for (reason, n) in &summary.rejected {
        metrics.rejected.get_or_create(&label("reason", reason)).inc_by(*n);
    }
    summary.log("ingest batch");
    Ok(Json(IngestResponse {
        received: summary.read,
        sent: summary.sent,
        duplicates: summary.duplicates,
        stale: summary.stale,
        rejected,
    }))
}

/// The source's HTTP API: `POST /products` behind `auth`, the ops endpoints open.
pub fn router(loader: Loader, ops: Ops, max_body_bytes: usize, auth: ApiAuth) -> Router {
    let state = AppState { loader, metrics: SourceMetrics::register(&ops.metrics) };
    let ingest =
        Router::new().route("/products", post(ingest)).with_state(state).layer(DefaultBodyLimit::max(max_body_bytes));
    require_token(ingest, auth).merge(ops_router(ops))
}
