//! Training: standardise, fit KMeans with linfa (k given, or chosen by
//! silhouette over a range on a fixed-size sample), pack the artifact.

use linfa::traits::{Fit, Predict};
use linfa::DatasetBase;
use linfa_clustering::KMeans;
use ndarray::Array2;
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256Plus;

use lab8_protocol::{FEATURES, N_FEATURES};

use crate::artifact::{nearest, FeatureSpec, ModelArtifact, Scaler, TrainingReport, FORMAT_VERSION, MODEL_VERSION};

/// How k is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KChoice {
    Fixed(usize),
    /// Best mean silhouette over `min..=max`.
    BySilhouette {
        min: usize,
        max: usize,
    },
}

/// Training settings; the defaults are linfa's (k-means++ init, 10 runs,
/// tolerance 1e-4 on centroid shift, 300 iterations) with a fixed seed.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub k: KChoice,
    pub seed: u64,
    pub n_runs: usize,
    pub max_iterations: u64,
    pub tolerance: f64,
    /// Rows used to compute silhouettes (its cost is quadratic in this).
    pub silhouette_sample: usize,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            k: KChoice::BySilhouette { min: 3, max: 12 },
            seed: 42,
            n_runs: 10,
            max_iterations: 300,
            tolerance: 1e-4,
            silhouette_sample: 2000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("no training rows: run the mart on some products first")]
    Empty,
    #[error("k = {k} needs at least {k} distinct rows, got {rows}")]
    TooFew { k: usize, rows: usize },
    #[error("invalid k range {min}..={max}: need 2 ≤ min ≤ max")]
    BadRange { min: usize, max: usize },
    #[error("kmeans: {0}")]
    KMeans(#[from] linfa_clustering::KMeansError),
}

/// A trained model and linfa's own assignment of the training rows.
pub struct Trained {
    pub artifact: ModelArtifact,
    pub labels: Vec<usize>,
}

/// Mean silhouette of `points` under `labels` (0 for singleton clusters).
pub fn silhouette(points: &[[f64; N_FEATURES]], labels: &[usize], k: usize) -> f64 {
    let n = points.len();
    if n < 2 {
        return 0.0;
    }
    let mut total = 0.0;
    let mut sums = vec![0.0; k];
    let mut counts = vec![0usize; k];
    for &l in labels {
        counts[l] += 1;
    }
    for i in 0..n {
        sums.iter_mut().for_each(|s| *s = 0.0);
        for j in 0..n {
            if i != j {
                let d: f64 = points[i].iter().zip(&points[j]).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt();
                sums[labels[j]] += d;
            }
        }
        let own = labels[i];
        if counts[own] <= 1 {
            continue;
        }
        let a = sums[own] / (counts[own] - 1) as f64;
        let b = (0..k)
            .filter(|&c| c != own && counts[c] > 0)
            .map(|c| sums[c] / counts[c] as f64)
            .fold(f64::INFINITY, f64::min);
        if b.is_finite() {
            total += (b - a) / a.max(b);
        }
    }
    total / n as f64
}

/// Evenly spaced sample indices: deterministic and spread over the input order.
fn sample_indices(n: usize, size: usize) -> Vec<usize> {
    if n <= size {
        return (0..n).collect();
    }
    (0..size).map(|i| i * n / size).collect()
}

type Model = KMeans<f64, linfa_nn::distance::L2Dist>;

/// One k-means++ start with its own seed.
fn fit_once(z: &Array2<f64>, k: usize, options: &TrainOptions, seed: u64) -> Result<Model, TrainError> {
    let dataset = DatasetBase::from(z.view());
    let rng = Xoshiro256Plus::seed_from_u64(seed);
    Ok(KMeans::params_with_rng(k, rng)
        .n_runs(1)
        .tolerance(options.tolerance)
        .max_n_iterations(options.max_iterations)
        .fit(&dataset)?)
}

/// `n_runs` independent starts (seeds `seed`, `seed + 1`, …) spread over the
/// cores, keeping the lowest inertia (ties: the lowest seed). linfa runs its
/// restarts one after another on one core; scikit-learn parallelises its
/// Lloyd iterations. The result does not depend on the number of cores.
fn fit(z: &Array2<f64>, k: usize, options: &TrainOptions) -> Result<Model, TrainError> {
    fit_with_seed(z, k, options).map(|(model, _)| model)
}

/// [`fit`], and the seed of the restart that won.
fn fit_with_seed(z: &Array2<f64>, k: usize, options: &TrainOptions) -> Result<(Model, u64), TrainError> {
    let runs = options.n_runs.max(1);
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(runs);
    let mut results: Vec<(usize, Result<Model, TrainError>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    (t..runs)
                        .step_by(threads)
                        .map(|run| (run, fit_once(z, k, options, options.seed + run as u64)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("a k-means worker panicked")).collect()
    });
    results.sort_by_key(|(run, _)| *run);
    let mut best: Option<(Model, u64)> = None;
    for (run, result) in results {
        let model = result?;
        if best.as_ref().is_none_or(|(b, _)| model.inertia() < b.inertia()) {
            best = Some((model, options.seed + run as u64));
        }
    }
    Ok(best.expect("at least one run"))
}

/// The KMeans fit alone on rows already standardised: its centroids and the
/// seed of the winning restart. For benchmarks that time the fit without
/// scaling, silhouettes or scoring.
pub fn fit_standardised(
    z: &[[f64; N_FEATURES]],
    k: usize,
    options: &TrainOptions,
) -> Result<(Vec<[f64; N_FEATURES]>, u64), TrainError> {
    let (model, seed) = fit_with_seed(&standardised_matrix(z), k, options)?;
    Ok((centroid_rows(&model), seed))
}

/// Lloyd iterations linfa ran in the restart with `seed` (linfa does not
/// report it): the least iteration cap whose result equals the uncapped one,
/// found by bisection — a capped fit runs the same iterations, so its result
/// is equal exactly from the converged count on.
pub fn iterations_of(z: &[[f64; N_FEATURES]], k: usize, options: &TrainOptions, seed: u64) -> Result<u64, TrainError> {
    let z = standardised_matrix(z);
    let capped = |cap: u64| -> Result<Array2<f64>, TrainError> {
        let options = TrainOptions { max_iterations: cap, ..options.clone() };
        Ok(fit_once(&z, k, &options, seed)?.centroids().clone())
    };
    let converged = capped(options.max_iterations)?;
    let (mut low, mut high) = (1, options.max_iterations);
    while low < high {
        let middle = (low + high) / 2;
        if capped(middle)? == converged {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    Ok(low)
}

fn standardised_matrix(z: &[[f64; N_FEATURES]]) -> Array2<f64> {
    Array2::from_shape_vec((z.len(), N_FEATURES), z.iter().flatten().copied().collect()).expect("shape matches")
}

/// Trains on raw (unscaled) feature rows.
pub fn train(rows: &[[f64; N_FEATURES]], options: &TrainOptions) -> Result<Trained, TrainError> {
    if rows.is_empty() {
        return Err(TrainError::Empty);
    }
    let (min, max) = match options.k {
        KChoice::Fixed(k) => (k, k),
        KChoice::BySilhouette { min, max } => (min, max),
    };
    if min < 1 || min > max || (matches!(options.k, KChoice::BySilhouette { .. }) && min < 2) {
        return Err(TrainError::BadRange { min, max });
    }
    if rows.len() < max {
        return Err(TrainError::TooFew { k: max, rows: rows.len() });
    }
    let scaler = Scaler::fit(rows);
    let scaled: Vec<[f64; N_FEATURES]> = rows.iter().map(|r| scaler.transform(r)).collect();
    let z = Array2::from_shape_vec((rows.len(), N_FEATURES), scaled.iter().flatten().copied().collect())
        .expect("shape matches");
    let sample: Vec<usize> = sample_indices(rows.len(), options.silhouette_sample);
    let sample_points: Vec<[f64; N_FEATURES]> = sample.iter().map(|&i| scaled[i]).collect();

    let mut best: Option<(usize, f64, Model)> = None;
    let mut by_k = Vec::new();
    for k in min..=max {
        let model = fit(&z, k, options)?;
        let centroids = centroid_rows(&model);
        let labels: Vec<usize> = sample_points.iter().map(|p| nearest(&centroids, p).0 as usize).collect();
        let score = silhouette(&sample_points, &labels, k);
        tracing::info!(k, silhouette = format!("{score:.4}"), "kmeans fitted");
        by_k.push((k, score));
        if best.as_ref().is_none_or(|(_, s, _)| score > *s) {
            best = Some((k, score, model));
        }
    }
    let (k, score, model) = best.expect("at least one k");
    let centroids = centroid_rows(&model);
    let labels: Vec<usize> = model.predict(&z).to_vec();
    let inertia = scaled.iter().map(|p| nearest(&centroids, p).1.powi(2)).sum();
    let artifact = ModelArtifact {
        format_version: FORMAT_VERSION,
        model_version: MODEL_VERSION.into(),
        algorithm: "kmeans (linfa-clustering, k-means++ init)".into(),
        features: FEATURES.iter().map(|f| FeatureSpec { name: f.name.into(), unit: f.unit.into() }).collect(),
        k,
        scaler,
        centroids,
        training: TrainingReport {
            training_rows: rows.len(),
            inertia,
            silhouette: score,
            silhouette_by_k: if min == max { Vec::new() } else { by_k },
            silhouette_sample: sample.len(),
            seed: options.seed,
            n_runs: options.n_runs,
            max_iterations: options.max_iterations,
            tolerance: options.tolerance,
        },
    }
    .with_content_version();
    Ok(Trained { artifact, labels })
}

fn centroid_rows(model: &Model) -> Vec<[f64; N_FEATURES]> {
    model
        .centroids()
        .rows()
        .into_iter()
        .map(|row| {
            let mut c = [0.0; N_FEATURES];
            c.iter_mut().zip(row.iter()).for_each(|(slot, v)| *slot = *v);
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::unpack;

    /// Three well-separated blobs with a little deterministic jitter.
    fn blobs() -> Vec<[f64; N_FEATURES]> {
        let centres = [
            [100.0, 1.0, 0.2, 10.0, 5.0, 1.0, 2.0, 0.1],
            [1500.0, 20.0, 8.0, 60.0, 30.0, 3.0, 7.0, 0.5],
            [2500.0, 50.0, 20.0, 20.0, 10.0, 8.0, 20.0, 2.0],
        ];
        (0..300)
            .map(|i| {
                let c = centres[i % 3];
                let jitter = ((i * 7919) % 100) as f64 / 1000.0;
                let mut row = c;
                row.iter_mut().for_each(|v| *v *= 1.0 + jitter * 0.1);
                row
            })
            .collect()
    }

    #[test]
    fn silhouette_prefers_the_true_k() {
        let options = TrainOptions { k: KChoice::BySilhouette { min: 2, max: 6 }, n_runs: 3, ..Default::default() };
        let trained = train(&blobs(), &options).unwrap();
        assert_eq!(trained.artifact.k, 3);
        assert!(trained.artifact.training.silhouette > 0.8);
        assert_eq!(trained.artifact.training.silhouette_by_k.len(), 5);
    }

    #[test]
    fn artifact_round_trip_gives_identical_predictions() {
        let rows = blobs();
        let trained = train(&rows, &TrainOptions { k: KChoice::Fixed(3), n_runs: 2, ..Default::default() }).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let zip = dir.path().join("m.zip");
        trained.artifact.write_zip(&zip).unwrap();
        let loaded = unpack(&zip, &dir.path().join("model")).unwrap();
        let reloaded = ModelArtifact::load_dir(&dir.path().join("model")).unwrap();
        assert_eq!(loaded, reloaded);
        assert_eq!(reloaded, trained.artifact);
        for (row, label) in rows.iter().zip(&trained.labels) {
            assert_eq!(reloaded.predict(row).0 as usize, *label);
            assert_eq!(reloaded.predict(row), trained.artifact.predict(row));
        }
    }

    #[test]
    fn training_is_deterministic() {
        let options = TrainOptions { k: KChoice::Fixed(3), n_runs: 2, ..Default::default() };
        let a = train(&blobs(), &options).unwrap().artifact;
        let b = train(&blobs(), &options).unwrap().artifact;
        assert_eq!(a.to_json(), b.to_json());
    }

    #[test]
    fn refuses_empty_and_bad_ranges() {
        assert!(matches!(train(&[], &TrainOptions::default()), Err(TrainError::Empty)));
        let options = TrainOptions { k: KChoice::BySilhouette { min: 5, max: 3 }, ..Default::default() };
        assert!(matches!(train(&blobs(), &options), Err(TrainError::BadRange { .. })));
        let options = TrainOptions { k: KChoice::Fixed(3), ..Default::default() };
        assert!(matches!(train(&blobs()[..2], &options), Err(TrainError::TooFew { .. })));
    }
}
