//! The model artifact: a standard scaler and KMeans centroids as JSON in a
//! zip (`model-lab5-1.0.0.zip`), deterministic byte for byte for the same
//! training data, and the nearest-centroid scoring that uses it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use lab8_protocol::messages::Prediction;
use lab8_protocol::{FEATURES, N_FEATURES};
use serde::{Deserialize, Serialize};

/// Version of the artifact layout; a loader refuses others.
pub const FORMAT_VERSION: u32 = 1;
/// The model's release, also in the artifact's file name. The model version
/// is this plus a short hash of what the model computes with
/// ([`ModelArtifact::content_version`]): two artifacts that score
/// differently never share a version.
pub const MODEL_VERSION: &str = "1.0.0";
/// Where `lab8-model train` writes the artifact, from the repository root
/// (the kustomize tree and the images take it from there).
pub const DEFAULT_ARTIFACT_PATH: &str = concat!("dist/", lab8_protocol::artifact_file!());
/// The JSON document inside the zip, and in an unpacked `MODEL_DIR`.
pub const MODEL_FILE: &str = "model.json";

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("MODEL_DIR: {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("MODEL_DIR: {path} is not a valid model: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("zip {path}: {source}")]
    Zip { path: PathBuf, source: zip::result::ZipError },
}

/// A feature as recorded in the artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    pub name: String,
    pub unit: String,
}

/// Standardisation: (x − mean) / std per feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaler {
    pub mean: [f64; N_FEATURES],
    pub std: [f64; N_FEATURES],
}

impl Scaler {
    /// Fits on rows; a constant feature gets std 1 so it maps to 0.
    pub fn fit(rows: &[[f64; N_FEATURES]]) -> Self {
        let n = rows.len().max(1) as f64;
        let mut mean = [0.0; N_FEATURES];
        for row in rows {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += v / n;
            }
        }
        let mut std = [0.0; N_FEATURES];
        for row in rows {
            for ((s, v), m) in std.iter_mut().zip(row).zip(&mean) {
                *s += (v - m).powi(2) / n;
            }
        }
        for s in &mut std {
            *s = if *s > 1e-12 { s.sqrt() } else { 1.0 };
        }
        Self { mean, std }
    }

    pub fn transform(&self, x: &[f64; N_FEATURES]) -> [f64; N_FEATURES] {
        let mut z = [0.0; N_FEATURES];
        for i in 0..N_FEATURES {
            z[i] = (x[i] - self.mean[i]) / self.std[i];
        }
        z
    }
}

/// Quality figures recorded at training time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingReport {
    pub training_rows: usize,
    /// Sum of squared distances to the nearest centroid (standardised space).
    pub inertia: f64,
    /// Mean silhouette on the evaluation sample.
    pub silhouette: f64,
    /// Silhouette of each k tried, when k was chosen by silhouette.
    pub silhouette_by_k: Vec<(usize, f64)>,
    pub silhouette_sample: usize,
    pub seed: u64,
    pub n_runs: usize,
    pub max_iterations: u64,
    pub tolerance: f64,
}

/// The whole model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelArtifact {
    pub format_version: u32,
    pub model_version: String,
    pub algorithm: String,
    pub features: Vec<FeatureSpec>,
    pub k: usize,
    pub scaler: Scaler,
    /// Centroids in standardised feature space.
    pub centroids: Vec<[f64; N_FEATURES]>,
    pub training: TrainingReport,
}

impl ModelArtifact {
    /// Nearest centroid and the Euclidean distance to it (standardised space).
    pub fn predict(&self, x: &[f64; N_FEATURES]) -> (u32, f64) {
        nearest(&self.centroids, &self.scaler.transform(x))
    }

    /// The prediction message for a product's features of `product_version`.
    pub fn prediction(&self, code: &str, x: &[f64; N_FEATURES], product_version: &str) -> Prediction {
        let (cluster, distance) = self.predict(x);
        Prediction {
            code: code.to_string(),
            cluster,
            distance,
            model_version: self.model_version.clone(),
            product_version: product_version.to_string(),
        }
    }

    /// `<release>+<8 hex digits>`: the release and a hash of k, the scaler
    /// and the centroids.
    pub fn content_version(&self) -> String {
        let content = serde_json::to_vec(&(&self.k, &self.scaler, &self.centroids)).expect("model content serialises");
        format!("{MODEL_VERSION}+{:08x}", lab8_protocol::version::fnv1a(&content) as u32)
    }

    /// Sets [`ModelArtifact::model_version`] from the content.
    pub fn with_content_version(mut self) -> Self {
        self.model_version = self.content_version();
        self
    }

    /// Checks what a loader relies on.
    pub fn validate(&self) -> Result<(), String> {
        if self.format_version != FORMAT_VERSION {
            return Err(format!("format_version {} (this build reads {FORMAT_VERSION})", self.format_version));
        }
        let expected: Vec<&str> = FEATURES.iter().map(|f| f.name).collect();
        let found: Vec<&str> = self.features.iter().map(|f| f.name.as_str()).collect();
        if expected != found {
            return Err(format!("features {found:?}, expected {expected:?}"));
        }
        if self.k == 0 || self.centroids.len() != self.k {
            return Err(format!("k = {} with {} centroids", self.k, self.centroids.len()));
        }
        let finite = |v: &[f64]| v.iter().all(|x| x.is_finite());
        if !self.centroids.iter().all(|c| finite(c))
            || !finite(&self.scaler.mean)
            || !finite(&self.scaler.std)
            || self.scaler.std.iter().any(|s| *s <= 0.0)
        {
            return Err("non-finite centroid or scaler value".into());
        }
        if self.model_version != self.content_version() {
            return Err(format!(
                "model_version {} does not identify its content ({}): the artifact was edited, retrain it",
                self.model_version,
                self.content_version()
            ));
        }
        Ok(())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("artifact serialises")
    }

    /// Writes the zip with a fixed timestamp so the same model gives the same bytes.
    pub fn write_zip(&self, path: &Path) -> Result<(), ArtifactError> {
        let io = |source| ArtifactError::Io { path: path.to_path_buf(), source };
        let zip_err = |source| ArtifactError::Zip { path: path.to_path_buf(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut buffer = std::io::Cursor::new(Vec::new());
        {
            let mut zip = zip::ZipWriter::new(&mut buffer);
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .last_modified_time(zip::DateTime::default())
                .unix_permissions(0o644);
            zip.start_file(MODEL_FILE, options).map_err(zip_err)?;
            zip.write_all(self.to_json().as_bytes()).map_err(io)?;
            zip.finish().map_err(zip_err)?;
        }
        std::fs::write(path, buffer.into_inner()).map_err(io)
    }

    /// Reads the model straight from a zip.
    pub fn read_zip(path: &Path) -> Result<Self, ArtifactError> {
        let json = read_model_json(path)?;
        Self::from_json(&json, path)
    }

    /// Loads an unpacked model directory (`MODEL_DIR`).
    pub fn load_dir(dir: &Path) -> Result<Self, ArtifactError> {
        let path = dir.join(MODEL_FILE);
        let json = std::fs::read_to_string(&path).map_err(|source| ArtifactError::Io { path: path.clone(), source })?;
        Self::from_json(&json, &path)
    }

    fn from_json(json: &str, path: &Path) -> Result<Self, ArtifactError> {
        let invalid = |reason: String| ArtifactError::Invalid { path: path.to_path_buf(), reason };
        let model: ModelArtifact = serde_json::from_str(json).map_err(|e| invalid(e.to_string()))?;
        model.validate().map_err(invalid)?;
        Ok(model)
    }
}

/// Index of the nearest centroid and the distance to it.
pub fn nearest(centroids: &[[f64; N_FEATURES]], z: &[f64; N_FEATURES]) -> (u32, f64) {
    let mut best = (0u32, f64::INFINITY);
    for (i, c) in centroids.iter().enumerate() {
        let d2: f64 = c.iter().zip(z).map(|(a, b)| (a - b) * (a - b)).sum();
        if d2 < best.1 {
            best = (i as u32, d2);
        }
    }
    (best.0, best.1.sqrt())
}

fn read_model_json(zip_path: &Path) -> Result<String, ArtifactError> {
    let zip_err = |source| ArtifactError::Zip { path: zip_path.to_path_buf(), source };
    let file =
        std::fs::File::open(zip_path).map_err(|source| ArtifactError::Io { path: zip_path.to_path_buf(), source })?;
    let mut archive = zip::ZipArchive::new(file).map_err(zip_err)?;
    let mut entry = archive.by_name(MODEL_FILE).map_err(zip_err)?;
    let mut json = String::new();
    entry.read_to_string(&mut json).map_err(|source| ArtifactError::Io { path: zip_path.to_path_buf(), source })?;
    Ok(json)
}

/// Unpacks the artifact into `dir` (flat: `dir/model.json`), after checking
/// it is a valid model. The init container runs this.
pub fn unpack(zip_path: &Path, dir: &Path) -> Result<ModelArtifact, ArtifactError> {
    let json = read_model_json(zip_path)?;
    let model = ModelArtifact::from_json(&json, zip_path)?;
    std::fs::create_dir_all(dir).map_err(|source| ArtifactError::Io { path: dir.to_path_buf(), source })?;
    let target = dir.join(MODEL_FILE);
    std::fs::write(&target, json).map_err(|source| ArtifactError::Io { path: target, source })?;
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ModelArtifact {
        ModelArtifact {
            format_version: FORMAT_VERSION,
            model_version: MODEL_VERSION.into(),
            algorithm: "kmeans".into(),
            features: FEATURES.iter().map(|f| FeatureSpec { name: f.name.into(), unit: f.unit.into() }).collect(),
            k: 2,
            scaler: Scaler { mean: [0.0; N_FEATURES], std: [1.0; N_FEATURES] },
            centroids: vec![[0.0; N_FEATURES], [10.0; N_FEATURES]],
            training: TrainingReport {
                training_rows: 2,
                inertia: 0.0,
                silhouette: 1.0,
                silhouette_by_k: vec![],
                silhouette_sample: 2,
                seed: 1,
                n_runs: 1,
                max_iterations: 1,
                tolerance: 1e-4,
            },
        }
        .with_content_version()
    }

    #[test]
    fn predicts_the_nearest_centroid() {
        let model = tiny();
        assert_eq!(model.predict(&[1.0; N_FEATURES]).0, 0);
        let (cluster, distance) = model.predict(&[9.0; N_FEATURES]);
        assert_eq!(cluster, 1);
        assert!((distance - (N_FEATURES as f64).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn zip_is_deterministic_and_unpacks_flat() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.zip"), dir.path().join("b.zip"));
        tiny().write_zip(&a).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        tiny().write_zip(&b).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        let out = dir.path().join("model");
        unpack(&a, &out).unwrap();
        assert_eq!(ModelArtifact::load_dir(&out).unwrap(), tiny());
    }

    #[test]
    fn corrupt_or_missing_models_are_refused_with_the_setting_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = ModelArtifact::load_dir(dir.path()).unwrap_err().to_string();
        assert!(err.starts_with("MODEL_DIR"), "{err}");
        std::fs::write(dir.path().join(MODEL_FILE), "{\"format_version\": 1}").unwrap();
        let err = ModelArtifact::load_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a valid model"), "{err}");
        let mut edited = tiny();
        edited.centroids[0][0] = 0.5;
        std::fs::write(dir.path().join(MODEL_FILE), edited.to_json()).unwrap();
        let err = ModelArtifact::load_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("does not identify its content"), "{err}");
        assert!(tiny().model_version.starts_with("1.0.0+"));
        let mut bad = tiny();
        bad.centroids.pop();
        std::fs::write(dir.path().join(MODEL_FILE), bad.to_json()).unwrap();
        assert!(ModelArtifact::load_dir(dir.path()).is_err());
        std::fs::write(dir.path().join("x.zip"), b"not a zip").unwrap();
        assert!(unpack(&dir.path().join("x.zip"), &dir.path().join("o")).is_err());
    }
}
