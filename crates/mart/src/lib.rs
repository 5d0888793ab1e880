//! lab8-mart: the data mart. Consumes raw products, cleans them with Polars,
//! sends feature rows to the model, and materialises product → cluster and
//! per-cluster profiles from the model's predictions: incrementally, one
//! model at a time, with products replaced by newer versions.

pub mod api;
pub mod clean;
pub mod materialise;
pub mod service;

pub use service::{MartConfig, MartMetrics, MartReport};

#[derive(Debug, thiserror::Error)]
pub enum MartError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Clean(#[from] clean::CleanError),
    #[error("polars: {0}")]
    Polars(#[from] polars::prelude::PolarsError),
    #[error("corrupt mart table: {0}")]
    Json(#[from] serde_json::Error),
    #[error("inconsistent mart: {0}")]
    Inconsistent(String),
}
