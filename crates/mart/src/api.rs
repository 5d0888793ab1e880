//! The mart's read API (`/api/v1`) and its web page (`/`). Every answer is
//! read from Redis structures sized to the page: the current model's k
//! profiles, a cluster's members ordered by distance, the name index, one
//! product's rows; no request reads a whole table.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use lab8_bus::maintenance::group_backlog;
use lab8_bus::Bus;
use lab8_protocol::messages::{ClusterProfile, Prediction, ProductRow, Stage};
use lab8_protocol::FEATURES;
use lab8_service::HttpError;
use redis::aio::ConnectionManager;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::service::consumer_groups;

/// Largest page of `/clusters/{id}/products`, and its default.
pub const MAX_PAGE: usize = 100;
const DEFAULT_PAGE: usize = 20;
/// Largest answer of `/search`, and its default; shortest query.
pub const MAX_SEARCH: usize = 50;
const DEFAULT_SEARCH: usize = 20;
const MIN_QUERY: usize = 2;

/// The Redis connection, set once the mart has connected (503 before).
#[derive(Clone, Default)]
pub struct ApiState {
    bus: Arc<OnceLock<Bus>>,
}

impl ApiState {
    pub fn set_bus(&self, bus: Bus) {
        let _ = self.bus.set(bus);
    }

    fn bus(&self) -> Result<&Bus, HttpError> {
        self.bus.get().ok_or_else(|| HttpError(StatusCode::SERVICE_UNAVAILABLE, "not connected to Redis yet".into()))
    }
}

fn redis_error(e: redis::RedisError) -> HttpError {
    tracing::warn!(error = %e, "API: Redis request failed");
    HttpError(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable, retry later".into())
}

fn corrupt(e: serde_json::Error) -> HttpError {
    HttpError(StatusCode::INTERNAL_SERVER_ERROR, format!("corrupt mart row: {e}"))
}

fn not_found(what: String) -> HttpError {
    HttpError(StatusCode::NOT_FOUND, what)
}

async fn current_model(conn: &mut ConnectionManager, bus: &Bus) -> Result<Option<String>, HttpError> {
    redis::cmd("GET").arg(bus.keys().mart_current_model()).query_async(conn).await.map_err(redis_error)
}

fn features_object(values: &[f64]) -> Value {
    Value::Object(FEATURES.iter().zip(values).map(|(f, v)| (f.name.to_string(), json!(v))).collect())
}

fn profile_json(p: &ClusterProfile, total: u64) -> Value {
    json!({
        "cluster": p.cluster,
        "size": p.count,
        "share": if total > 0 { p.count as f64 / total as f64 } else { 0.0 },
        "mean": features_object(&p.mean),
        "std": features_object(&p.std),
        "top_categories": p.top_categories.iter().map(|(c, n)| json!({"category": c, "products": n})).collect::<Vec<_>>(),
    })
}

async fn read_profiles(conn: &mut ConnectionManager, bus: &Bus) -> Result<Vec<ClusterProfile>, HttpError> {
    let raw: Vec<String> =
        redis::cmd("HVALS").arg(bus.keys().mart_clusters()).query_async(conn).await.map_err(redis_error)?;
    let mut profiles: Vec<ClusterProfile> =
        raw.iter().map(|j| serde_json::from_str(j)).collect::<Result<_, _>>().map_err(corrupt)?;
    profiles.sort_by_key(|p| p.cluster);
    Ok(profiles)
}

/// `GET /api/v1/clusters`: the current model's clusters and the overall mean.
async fn clusters(State(state): State<ApiState>) -> Result<Json<Value>, HttpError> {
    let bus = state.bus()?;
    let mut conn = bus.conn();
    let profiles = read_profiles(&mut conn, bus).await?;
    let total: u64 = profiles.iter().map(|p| p.count).sum();
    let mut overall = vec![0.0; FEATURES.len()];
    for p in &profiles {
        for (o, m) in overall.iter_mut().zip(p.mean) {
            *o += m * p.count as f64 / total.max(1) as f64;
        }
    }
    Ok(Json(json!({
        "model_version": current_model(&mut conn, bus).await?,
        "products": total,
        "features": FEATURES.iter().map(|f| json!({"name": f.name, "unit": f.unit})).collect::<Vec<_>>(),
        "overall_mean": features_object(&overall),
        "clusters": profiles.iter().map(|p| profile_json(p, total)).collect::<Vec<_>>(),
    })))
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    cursor: Option<String>,
    limit: Option<usize>,
}

fn bad_request(what: String) -> HttpError {
    HttpError(StatusCode::BAD_REQUEST, what)
}

/// `GET /api/v1/clusters/{id}/products?cursor=&limit=`: members nearest to
/// the centroid first; `next_cursor` is null on the last page.
async fn cluster_products(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Query(page): Query<PageQuery>,
) -> Result<Json<Value>, HttpError> {
    let cluster: u32 = id.parse().map_err(|_| bad_request(format!("cluster id {id:?} is not a number")))?;
    let limit = page.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(bad_request(format!("limit must be 1..={MAX_PAGE}")));
    }
    let start: usize = match page.cursor.as_deref() {
        None | Some("") => 0,
        Some(c) => c.parse().map_err(|_| bad_request(format!("cursor {c:?} is not one this API gave")))?,
    };
    let bus = state.bus()?;
    let keys = bus.keys();
    let mut conn = bus.conn();
    let Some(version) = current_model(&mut conn, bus).await? else {
        return Err(not_found("no model yet: no clusters".into()));
    };
    let exists: bool = redis::cmd("HEXISTS")
        .arg(keys.mart_clusters())
        .arg(cluster)
        .query_async(&mut conn)
        .await
        .map_err(redis_error)?;
    if !exists {
        return Err(not_found(format!("no cluster {cluster} in model {version}")));
    }
    let members: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(keys.model_key(&version, &format!("members:{cluster}")))
        .arg(start)
        .arg(start + limit - 1)
        .arg("WITHSCORES")
        .query_async(&mut conn)
        .await
        .map_err(redis_error)?;
    let rows = product_rows(&mut conn, bus, members.iter().map(|(c, _)| c.as_str())).await?;
    let products: Vec<Value> = members
        .iter()
        .zip(rows)
        .filter_map(|((code, distance), row)| {
            row.map(|r| json!({"code": code, "name": r.name, "categories": r.tags, "distance": distance}))
        })
        .collect();
    let next = (members.len() == limit).then(|| (start + limit).to_string());
    Ok(Json(json!({"model_version": version, "cluster": cluster, "products": products, "next_cursor": next})))
}

async fn product_rows<'a>(
    conn: &mut ConnectionManager,
    bus: &Bus,
    codes: impl Iterator<Item = &'a str>,
) -> Result<Vec<Option<ProductRow>>, HttpError> {
    let codes: Vec<&str> = codes.collect();
    if codes.is_empty() {
        return Ok(Vec::new());
    }
    let raw: Vec<Option<String>> =
        redis::cmd("HMGET").arg(bus.keys().mart_products()).arg(&codes).query_async(conn).await.map_err(redis_error)?;
    raw.into_iter().map(|r| r.map(|j| serde_json::from_str(&j)).transpose()).collect::<Result<_, _>>().map_err(corrupt)
}

/// `GET /api/v1/products/{code}`: the clean product, its cluster and
/// distance under the current model — or why it was rejected.
async fn product(State(state): State<ApiState>, Path(code): Path<String>) -> Result<Json<Value>, HttpError> {
    let bus = state.bus()?;
    let keys = bus.keys();
    let mut conn = bus.conn();
    let Some(row) = product_rows(&mut conn, bus, std::iter::once(code.as_str())).await?.pop().flatten() else {
        let reason: Option<String> = redis::cmd("HGET")
            .arg(keys.mart_rejected_codes())
            .arg(&code)
            .query_async(&mut conn)
            .await
            .map_err(redis_error)?;
        return match reason {
            Some(reason) => Ok(Json(json!({"code": code, "status": "rejected", "reason": reason}))),
            None => Err(not_found(format!("no product {code:?} in the mart"))),
        };
    };
    let assignment: Option<String> =
        redis::cmd("HGET").arg(keys.mart_assignments()).arg(&code).query_async(&mut conn).await.map_err(redis_error)?;
    let assignment: Option<Prediction> = assignment.map(|j| serde_json::from_str(&j)).transpose().map_err(corrupt)?;
    let centroid = match &assignment {
        Some(a) => {
            let profile: Option<String> = redis::cmd("HGET")
                .arg(keys.mart_clusters())
                .arg(a.cluster)
                .query_async(&mut conn)
                .await
                .map_err(redis_error)?;
            profile
                .map(|j| serde_json::from_str::<ClusterProfile>(&j))
                .transpose()
                .map_err(corrupt)?
                .map(|p| features_object(&p.mean))
        }
        None => None,
    };
    Ok(Json(json!({
        "code": row.code,
        "status": if assignment.is_some() { "assigned" } else { "awaiting_cluster" },
        "name": row.name,
        "categories": row.tags,
        "nutriscore": row.nutriscore,
        "features": features_object(&row.x),
        "imputed": row.imputed,
        "version": row.version,
        "cluster": assignment.as_ref().map(|a| a.cluster),
        "distance": assignment.as_ref().map(|a| a.distance),
        "model_version": assignment.as_ref().map(|a| a.model_version.clone()),
        "cluster_mean": centroid,
    })))
}

#[derive(Debug, Deserialize)]
struct SearchQuery {
    q: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/v1/search?q=`: products whose name starts with `q` (ASCII
/// letters case-insensitive), at most `limit` (≤ 50).
async fn search(State(state): State<ApiState>, Query(query): Query<SearchQuery>) -> Result<Json<Value>, HttpError> {
    let q = query.q.unwrap_or_default().trim().to_ascii_lowercase();
    if q.chars().count() < MIN_QUERY {
        return Err(bad_request(format!("q must have at least {MIN_QUERY} characters")));
    }
    let limit = query.limit.unwrap_or(DEFAULT_SEARCH);
    if limit == 0 || limit > MAX_SEARCH {
        return Err(bad_request(format!("limit must be 1..={MAX_SEARCH}")));
    }
    let bus = state.bus()?;
    let keys = bus.keys();
    let mut conn = bus.conn();
    let found: Vec<Vec<u8>> = redis::cmd("ZRANGE")
        .arg(keys.mart_names())
        .arg(format!("[{q}"))
        .arg([format!("[{q}").as_bytes(), &[0xff]].concat())
        .arg("BYLEX")
        .arg("LIMIT")
        .arg(0)
        .arg(limit)
        .query_async(&mut conn)
        .await
        .map_err(redis_error)?;
    let codes: Vec<String> = found
        .iter()
        .filter_map(|m| m.iter().position(|b| *b == 0).map(|i| String::from_utf8_lossy(&m[i + 1..]).into_owned()))
        .collect();
    let rows = product_rows(&mut conn, bus, codes.iter().map(String::as_str)).await?;
    let clusters: Vec<Option<String>> = if codes.is_empty() {
        Vec::new()
    } else {
        redis::cmd("HMGET")
            .arg(keys.mart_assignments())
            .arg(&codes)
            .query_async(&mut conn)
            .await
            .map_err(redis_error)?
    };
    let results: Vec<Value> = rows
        .into_iter()
        .zip(clusters)
        .filter_map(|(row, assignment)| {
            let cluster = assignment.and_then(|j| serde_json::from_str::<Prediction>(&j).ok()).map(|a| a.cluster);
            row.map(|r| json!({"code": r.code, "name": r.name, "cluster": cluster}))
        })
        .collect();
    Ok(Json(json!({"query": q, "results": results})))
}

/// The backlog of a consumer group: not yet delivered plus pending.
async fn backlog(conn: &mut ConnectionManager, stream: &str, group: &str) -> Result<Value, HttpError> {
    let backlog = group_backlog(conn, stream, group).await.map_err(redis_error)?;
    Ok(json!({"stream": stream, "group": group, "lag": backlog.lag, "pending": backlog.pending}))
}

async fn counts(conn: &mut ConnectionManager, key: String) -> Result<BTreeMap<String, u64>, HttpError> {
    redis::cmd("HGETALL").arg(key).query_async(conn).await.map_err(redis_error)
}

/// `GET /api/v1/stats`: records read, clean, rejected and ignored by reason,
/// backlogs, the current model and the backfill of a newer one.
async fn stats(State(state): State<ApiState>) -> Result<Json<Value>, HttpError> {
    let bus = state.bus()?;
    let keys = bus.keys();
    let mut conn = bus.conn();
    let info: redis::RedisResult<BTreeMap<String, redis::Value>> =
        redis::cmd("XINFO").arg("STREAM").arg(keys.raw_stream()).query_async(&mut conn).await;
    let read = match info.ok().and_then(|i| i.get("entries-added").cloned()) {
        Some(redis::Value::Int(n)) => n,
        _ => 0,
    };
    let products: u64 =
        redis::cmd("HLEN").arg(keys.mart_products()).query_async(&mut conn).await.map_err(redis_error)?;
    let assigned: u64 =
        redis::cmd("HLEN").arg(keys.mart_assignments()).query_async(&mut conn).await.map_err(redis_error)?;
    let replaced: Option<u64> =
        redis::cmd("GET").arg(keys.mart_replaced()).query_async(&mut conn).await.map_err(redis_error)?;
    let current = current_model(&mut conn, bus).await?;
    let newest: Vec<String> =
        redis::cmd("ZRANGE").arg(keys.models()).arg(-1).arg(-1).query_async(&mut conn).await.map_err(redis_error)?;
    let backfill = match newest.first() {
        Some(newest) if Some(newest) != current.as_ref() => {
            let done: u64 = redis::cmd("HLEN")
                .arg(keys.assignments_of(newest, current.as_deref()))
                .query_async(&mut conn)
                .await
                .map_err(redis_error)?;
            json!({"model_version": newest, "assigned": done, "of": assigned})
        }
        _ => Value::Null,
    };
    let mut backlogs = Vec::new();
    for (stream, group) in consumer_groups(keys) {
        backlogs.push(backlog(&mut conn, &stream, group).await?);
    }
    Ok(Json(json!({
        "records_read": read,
        "products": products,
        "assigned": assigned,
        "replaced": replaced.unwrap_or(0),
        "ignored": counts(&mut conn, keys.mart_ignored()).await?,
        "rejected": {
            "source": counts(&mut conn, keys.rejections(Stage::Source)).await?,
            "mart": counts(&mut conn, keys.rejections(Stage::Mart)).await?,
            "model": counts(&mut conn, keys.rejections(Stage::Model)).await?,
        },
        "backlogs": backlogs,
        "model_version": current,
        "backfill": backfill,
    })))
}

/// Largest sample per cluster of `/map`, and its default.
pub const MAX_MAP_SAMPLE: usize = 200;
const DEFAULT_MAP_SAMPLE: usize = 60;

#[derive(Debug, Deserialize)]
struct MapQuery {
    per_cluster: Option<usize>,
}

/// `GET /api/v1/map?per_cluster=`: a random sample of each cluster's
/// products with their features, for the page's 2-D map (it projects them
/// on their first two principal components).
async fn map(State(state): State<ApiState>, Query(query): Query<MapQuery>) -> Result<Json<Value>, HttpError> {
    let n = query.per_cluster.unwrap_or(DEFAULT_MAP_SAMPLE);
    if n == 0 || n > MAX_MAP_SAMPLE {
        return Err(bad_request(format!("per_cluster must be 1..={MAX_MAP_SAMPLE}")));
    }
    let bus = state.bus()?;
    let mut conn = bus.conn();
    let Some(version) = current_model(&mut conn, bus).await? else {
        return Ok(Json(json!({"model_version": null, "points": []})));
    };
    let mut points = Vec::new();
    for profile in read_profiles(&mut conn, bus).await? {
        let codes: Vec<String> = redis::cmd("ZRANDMEMBER")
            .arg(bus.keys().model_key(&version, &format!("members:{}", profile.cluster)))
            .arg(n)
            .query_async(&mut conn)
            .await
            .map_err(redis_error)?;
        for row in product_rows(&mut conn, bus, codes.iter().map(String::as_str)).await?.into_iter().flatten() {
            points.push(json!({"cluster": profile.cluster, "code": row.code, "x": row.x}));
        }
    }
    Ok(Json(
        json!({"model_version": version, "features": FEATURES.iter().map(|f| f.name).collect::<Vec<_>>(), "points": points}),
    ))
}

async fn unknown_api() -> HttpError {
    not_found(
        "no such API route: see /api/v1/clusters, /clusters/{id}/products, /products/{code}, /search?q=, /map, /stats"
            .into(),
    )
}

/// The page at `/` (one file, no CDN, no build step).
const PAGE: &str = include_str!("page.html");

/// The read API and the page.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/api/v1/clusters", get(clusters))
        .route("/api/v1/clusters/{id}/products", get(cluster_products))
        .route("/api/v1/products/{code}", get(product))
        .route("/api/v1/search", get(search))
        .route("/api/v1/stats", get(stats))
        .route("/api/v1/map", get(map))
        .route("/api/v1/{*rest}", get(unknown_api))
        .route(
            "/favicon.ico",
            get(|| async { (StatusCode::NO_CONTENT, [(header::CACHE_CONTROL, "max-age=86400")]).into_response() }),
        )
        .with_state(state)
}
