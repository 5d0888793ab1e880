//! Benchmark helper (scripts/bench.sh): lab8's KMeans fit alone, timed,
//! on the mart's products scaled by a model's own scaler, with that model's
//! k, seed, restarts, iteration cap and tolerance — the same matrix and
//! settings `bench/sklearn_kmeans.py` gives scikit-learn. Prints one JSON
//! line: rows, k, tolerance, fit seconds, inertia, the winning restart's
//! iterations and the centroids.
//!
//!   bench_kmeans PRODUCTS_JSONL MODEL_JSON

use std::time::Instant;

use anyhow::Context;
use lab8_model::artifact::{nearest, ModelArtifact};
use lab8_model::train::{fit_standardised, KChoice, TrainOptions};
use lab8_protocol::messages::ProductRow;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [products, model] = args.as_slice() else { anyhow::bail!("usage: bench_kmeans PRODUCTS_JSONL MODEL_JSON") };
    let model: ModelArtifact =
        serde_json::from_str(&std::fs::read_to_string(model).with_context(|| model.clone())?).context("model.json")?;
    let mut rows: Vec<ProductRow> = std::fs::read_to_string(products)
        .with_context(|| products.clone())?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    // The training order (by code): k-means++ seeding depends on row order.
    rows.sort_by(|a, b| a.code.cmp(&b.code));
    let z: Vec<_> = rows.iter().map(|r| model.scaler.transform(&r.x)).collect();
    let options = TrainOptions {
        k: KChoice::Fixed(model.k),
        seed: model.training.seed,
        n_runs: model.training.n_runs,
        max_iterations: model.training.max_iterations,
        tolerance: model.training.tolerance,
        ..TrainOptions::default()
    };
    let started = Instant::now();
    let (fitted, best_seed) = fit_standardised(&z, model.k, &options)?;
    let fit_seconds = started.elapsed().as_secs_f64();
    let (centroids, iterations) = (fitted.centroids, fitted.iterations);
    let inertia: f64 = z.iter().map(|p| nearest(&centroids, p).1.powi(2)).sum();
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(options.n_runs);
    println!(
        "{}",
        serde_json::json!({
            "rows": rows.len(), "k": model.k, "n_runs": options.n_runs, "max_iterations": options.max_iterations,
            "tolerance": options.tolerance, "threads": threads, "fit_seconds": fit_seconds, "inertia": inertia,
            "iterations": iterations, "best_seed": best_seed,
            "centroids": centroids,
        })
    );
    Ok(())
}
