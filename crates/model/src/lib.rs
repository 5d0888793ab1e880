//! lab8-model: trains KMeans with linfa into a portable artifact, and scores
//! the mart's feature rows (stream) and single products (`POST /predict`).

pub mod artifact;
pub mod service;
pub mod train;

pub use artifact::{ModelArtifact, DEFAULT_ARTIFACT_PATH};
