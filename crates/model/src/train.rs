//! Training: standardise, fit KMeans with k given or chosen by silhouette
//! over a range on a fixed-size sample (linfa seeds each restart and takes
//! its first step; the later steps, linfa's algorithm, run here), pack the
//! artifact.

use std::sync::atomic::{AtomicUsize, Ordering};

use linfa::traits::Fit;
use linfa::DatasetBase;
use linfa_clustering::KMeans;
use linfa_nn::distance::{Distance, L2Dist};
use ndarray::{Array2, ArrayView, ArrayView2, Dimension};
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

/// A trained model and the assignment of the training rows.
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

/// One fitted restart: centroids in the standardised space, linfa's inertia up
/// to rounding (the squared distances to the centroids of the last
/// assignment step, summed in row order) and the Lloyd iterations run.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    pub centroids: Vec<[f64; N_FEATURES]>,
    pub inertia: f64,
    pub iterations: u64,
}

/// One k-means++ start with its own seed. linfa seeds it and runs the first
/// Lloyd step; the later steps run here: the same step as linfa's (nearest
/// centroid, the first on ties; the m_k-means update that counts the old
/// centroid as one more member; stop when the L2 norm of the centroid shift
/// is below the tolerance), over fixed-size rows in one pass per iteration
/// where linfa walks ndarray row views split per row across threads.
/// `continues_exactly_like_linfa` checks the result equals linfa's own fit.
/// One exception: when linfa's first step already moves the centroids less
/// than the tolerance, linfa stops there and this takes one more step (the
/// seeds are out of reach: linfa does not expose its k-means++ alone); a
/// k-means++ seeding that is already a fixed point takes degenerate data.
fn fit_once(z: &[[f64; N_FEATURES]], k: usize, options: &TrainOptions, seed: u64) -> Result<Fitted, TrainError> {
    let view = ArrayView2::from_shape((z.len(), N_FEATURES), z.as_flattened()).expect("shape matches");
    // A cap of 0 still reaches linfa, which refuses it.
    let first = linfa_fit(view, k, options, seed, options.max_iterations.min(1))?;
    let mut fitted = Fitted {
        centroids: centroid_rows(first.centroids()),
        inertia: first.inertia() * z.len() as f64,
        iterations: 1,
    };
    while fitted.iterations < options.max_iterations {
        let (next, inertia) = lloyd_step(z, &fitted.centroids);
        let shift: f64 =
            fitted.centroids.iter().flatten().zip(next.iter().flatten()).map(|(a, b)| (a - b) * (a - b)).sum();
        fitted = Fitted { centroids: next, inertia, iterations: fitted.iterations + 1 };
        if shift.sqrt() < options.tolerance {
            break;
        }
    }
    Ok(fitted)
}

/// linfa's Euclidean distance with a fast path for contiguous rows: the
/// squared distance summed in the same order as linfa's `L2Dist` (the same
/// bits), over slices instead of a generic ndarray zip, which made linfa's
/// k-means++ seeding and first step 3× slower than the steps after them.
#[derive(Debug, Clone)]
struct RowL2;

impl Distance<f64> for RowL2 {
    fn distance<D: Dimension>(&self, a: ArrayView<f64, D>, b: ArrayView<f64, D>) -> f64 {
        L2Dist.distance(a, b)
    }

    fn rdistance<D: Dimension>(&self, a: ArrayView<f64, D>, b: ArrayView<f64, D>) -> f64 {
        match (a.as_slice(), b.as_slice()) {
            (Some(a), Some(b)) if a.len() == b.len() => {
                a.iter().zip(b).fold(0.0, |acc, (x, y)| acc + (x - y) * (x - y))
            }
            _ => L2Dist.rdistance(a, b),
        }
    }

    fn rdist_to_dist(&self, rdist: f64) -> f64 {
        L2Dist.rdist_to_dist(rdist)
    }

    fn dist_to_rdist(&self, dist: f64) -> f64 {
        Distance::<f64>::dist_to_rdist(&L2Dist, dist)
    }
}

/// linfa's KMeans: one k-means++ restart seeded with `seed`, at most
/// `max_iterations` Lloyd steps.
fn linfa_fit(
    z: ArrayView2<f64>,
    k: usize,
    options: &TrainOptions,
    seed: u64,
    max_iterations: u64,
) -> Result<KMeans<f64, RowL2>, TrainError> {
    let rng = Xoshiro256Plus::seed_from_u64(seed);
    Ok(KMeans::params_with(k, rng, RowL2)
        .n_runs(1)
        .tolerance(options.tolerance)
        .max_n_iterations(max_iterations)
        .fit(&DatasetBase::from(z))?)
}

/// One Lloyd step as linfa computes it: every row to its nearest centroid,
/// then each new centroid is (sum of its rows + old centroid) / (members + 1).
/// Sums run in row order like linfa's, so the centroids are the same bit for
/// bit. Returns them with the assignment's inertia (squared distances).
fn lloyd_step(z: &[[f64; N_FEATURES]], centroids: &[[f64; N_FEATURES]]) -> (Vec<[f64; N_FEATURES]>, f64) {
    let mut sums = vec![[0.0; N_FEATURES]; centroids.len()];
    let mut counts = vec![1.0f64; centroids.len()];
    let mut inertia = 0.0;
    for row in z {
        let (nearest, distance) = nearest_squared(centroids, row);
        sums[nearest].iter_mut().zip(row).for_each(|(s, v)| *s += v);
        counts[nearest] += 1.0;
        inertia += distance;
    }
    for ((sum, old), count) in sums.iter_mut().zip(centroids).zip(&counts) {
        sum.iter_mut().zip(old).for_each(|(s, o)| *s = (*s + o) / count);
    }
    (sums, inertia)
}

/// The nearest centroid (the first on ties) and the squared distance to it,
/// summed feature by feature like linfa's distance (the same bits).
fn nearest_squared(centroids: &[[f64; N_FEATURES]], row: &[f64; N_FEATURES]) -> (usize, f64) {
    let squared = |c: &[f64; N_FEATURES]| c.iter().zip(row).fold(0.0, |acc, (a, b)| acc + (a - b) * (a - b));
    let (mut nearest, mut least) = (0, squared(&centroids[0]));
    for (index, centroid) in centroids.iter().enumerate().skip(1) {
        let distance = squared(centroid);
        // Selects, not a branch: which centroid wins is unpredictable.
        let closer = distance < least;
        nearest = if closer { index } else { nearest };
        least = if closer { distance } else { least };
    }
    (nearest, least)
}

/// `n_runs` independent starts (seeds `seed`, `seed + 1`, …) spread over the
/// cores, keeping the lowest inertia (ties: the lowest seed). linfa runs its
/// restarts one after another; scikit-learn parallelises its Lloyd
/// iterations. The result does not depend on the number of cores.
fn fit(z: &[[f64; N_FEATURES]], k: usize, options: &TrainOptions) -> Result<Fitted, TrainError> {
    fit_standardised(z, k, options).map(|(fitted, _)| fitted)
}

/// The KMeans fit alone on rows already standardised: the winning restart
/// and its seed. Benchmarks time this without scaling, silhouettes or scoring.
pub fn fit_standardised(
    z: &[[f64; N_FEATURES]],
    k: usize,
    options: &TrainOptions,
) -> Result<(Fitted, u64), TrainError> {
    let runs = options.n_runs.max(1);
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(runs);
    // Each worker takes the next restart when it is done with one: restarts
    // converge after different numbers of steps.
    let next_run = AtomicUsize::new(0);
    let mut results: Vec<(usize, Result<Fitted, TrainError>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    std::iter::from_fn(|| Some(next_run.fetch_add(1, Ordering::Relaxed)))
                        .take_while(|&run| run < runs)
                        .map(|run| (run, fit_once(z, k, options, options.seed + run as u64)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("a k-means worker panicked")).collect()
    });
    results.sort_by_key(|(run, _)| *run);
    let mut best: Option<(Fitted, u64)> = None;
    for (run, result) in results {
        let fitted = result?;
        if best.as_ref().is_none_or(|(b, _)| fitted.inertia < b.inertia) {
            best = Some((fitted, options.seed + run as u64));
        }
    }
    Ok(best.expect("at least one run"))
}

/// Trains on raw (unscaled) feature rows, standardised in place (one copy
/// of the matrix in memory: 5M rows are 320 MB).
pub fn train(mut rows: Vec<[f64; N_FEATURES]>, options: &TrainOptions) -> Result<Trained, TrainError> {
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
    let scaler = Scaler::fit(&rows);
    rows.iter_mut().for_each(|r| *r = scaler.transform(r));
    let scaled = rows;
    let sample: Vec<usize> = sample_indices(scaled.len(), options.silhouette_sample);
    let sample_points: Vec<[f64; N_FEATURES]> = sample.iter().map(|&i| scaled[i]).collect();

    let mut best: Option<(usize, f64, Fitted)> = None;
    let mut by_k = Vec::new();
    for k in min..=max {
        let model = fit(&scaled, k, options)?;
        let centroids = &model.centroids;
        let labels: Vec<usize> = sample_points.iter().map(|p| nearest(centroids, p).0 as usize).collect();
        let score = silhouette(&sample_points, &labels, k);
        tracing::info!(k, silhouette = format!("{score:.4}"), "kmeans fitted");
        by_k.push((k, score));
        if best.as_ref().is_none_or(|(_, s, _)| score > *s) {
            best = Some((k, score, model));
        }
    }
    let (k, score, model) = best.expect("at least one k");
    let centroids = model.centroids;
    // One pass: each row's cluster and its share of the inertia, as scoring computes them.
    let mut inertia = 0.0;
    let labels: Vec<usize> = scaled
        .iter()
        .map(|p| {
            let (cluster, distance) = nearest(&centroids, p);
            inertia += distance.powi(2);
            cluster as usize
        })
        .collect();
    let artifact = ModelArtifact {
        format_version: FORMAT_VERSION,
        model_version: MODEL_VERSION.into(),
        algorithm: "kmeans (linfa-clustering, k-means++ init)".into(),
        features: FEATURES.iter().map(|f| FeatureSpec { name: f.name.into(), unit: f.unit.into() }).collect(),
        k,
        scaler,
        centroids,
        training: TrainingReport {
            training_rows: scaled.len(),
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

fn centroid_rows(centroids: &Array2<f64>) -> Vec<[f64; N_FEATURES]> {
    centroids
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
        let trained = train(blobs(), &options).unwrap();
        assert_eq!(trained.artifact.k, 3);
        assert!(trained.artifact.training.silhouette > 0.8);
        assert_eq!(trained.artifact.training.silhouette_by_k.len(), 5);
    }

    #[test]
    fn artifact_round_trip_gives_identical_predictions() {
        let rows = blobs();
        let trained =
            train(rows.clone(), &TrainOptions { k: KChoice::Fixed(3), n_runs: 2, ..Default::default() }).unwrap();
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
        let a = train(blobs(), &options).unwrap().artifact;
        let b = train(blobs(), &options).unwrap().artifact;
        assert_eq!(a.to_json(), b.to_json());
    }

    #[test]
    fn refuses_empty_and_bad_ranges() {
        assert!(matches!(train(Vec::new(), &TrainOptions::default()), Err(TrainError::Empty)));
        let options = TrainOptions { k: KChoice::BySilhouette { min: 5, max: 3 }, ..Default::default() };
        assert!(matches!(train(blobs(), &options), Err(TrainError::BadRange { .. })));
        let options = TrainOptions { k: KChoice::Fixed(3), ..Default::default() };
        assert!(matches!(train(blobs()[..2].to_vec(), &options), Err(TrainError::TooFew { .. })));
    }

    /// Overlapping clouds (a deterministic LCG): k-means needs a dozen or
    /// more steps on them, unlike on the separated blobs.
    fn clouds(n: usize) -> Vec<[f64; N_FEATURES]> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut uniform = move || {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        (0..n)
            .map(|i| {
                let centre = (i % 5) as f64;
                let mut row = [0.0; N_FEATURES];
                row.iter_mut().enumerate().for_each(|(d, v)| *v = centre * (d % 3) as f64 + 4.0 * uniform());
                row
            })
            .collect()
    }

    /// The steps after linfa's first are linfa's algorithm, and `RowL2` is
    /// linfa's distance: the same centroids bit for bit as linfa's whole fit
    /// with `L2Dist`, after the same number of iterations (capping linfa one
    /// step earlier gives other centroids).
    #[test]
    fn continues_exactly_like_linfa() {
        let z = clouds(3000);
        let view = ArrayView2::from_shape((z.len(), N_FEATURES), z.as_flattened()).unwrap();
        let options = TrainOptions::default();
        let mut total_iterations = 0;
        for (k, seed) in [(3, 1), (4, 2), (6, 3), (8, 4)] {
            let fitted = fit_once(&z, k, &options, seed).unwrap();
            // linfa's own fit with its own distance.
            let rng = Xoshiro256Plus::seed_from_u64(seed);
            let linfa = KMeans::params_with_rng(k, rng)
                .n_runs(1)
                .tolerance(options.tolerance)
                .max_n_iterations(options.max_iterations)
                .fit(&DatasetBase::from(view))
                .unwrap();
            assert_eq!(fitted.centroids, centroid_rows(linfa.centroids()), "k = {k}");
            let inertia = linfa.inertia() * z.len() as f64;
            assert!((fitted.inertia - inertia).abs() <= 1e-9 * inertia, "k = {k}: {} vs {inertia}", fitted.inertia);
            assert!(fitted.iterations > 1, "k = {k}: a step after linfa's first is checked");
            let capped = linfa_fit(view, k, &options, seed, fitted.iterations - 1).unwrap();
            assert_ne!(fitted.centroids, centroid_rows(capped.centroids()), "k = {k}: converged earlier");
            total_iterations += fitted.iterations;
            // Iteration caps: linfa's result after exactly that many steps.
            for cap in [1, 2, 3] {
                let options = TrainOptions { max_iterations: cap, ..options.clone() };
                let capped = fit_once(&z, k, &options, seed).unwrap();
                let linfa = linfa_fit(view, k, &options, seed, cap).unwrap();
                assert_eq!((capped.centroids, capped.iterations), (centroid_rows(linfa.centroids()), cap), "k = {k}");
            }
        }
        let zero = TrainOptions { max_iterations: 0, ..options };
        assert!(matches!(fit_once(&z, 3, &zero, 1), Err(TrainError::KMeans(_))), "a cap of 0 is refused");
        assert!(total_iterations >= 20, "the clouds must need several steps: {total_iterations}");
    }
}
