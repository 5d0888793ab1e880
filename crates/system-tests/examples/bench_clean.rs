//! Benchmark helper (scripts/bench.sh): reads export files with the source's
//! reader and cleans them with the mart's rules in batches, without Redis;
//! prints one JSON line with rows, seconds and rows/s for each stage.
//!
//!   cargo run --release --example bench_clean -p lab8-system-tests -- FILE... [--batch N]

use std::path::PathBuf;
use std::time::Instant;

use lab8_mart::clean::{clean_batch, Verdict};
use lab8_source::input::{read_file, ReadOptions};

fn main() -> anyhow::Result<()> {
    let mut files = Vec::new();
    let mut batch = 1000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--batch" {
            batch = args.next().and_then(|n| n.parse().ok()).ok_or_else(|| anyhow::anyhow!("--batch N"))?;
        } else {
            files.push(PathBuf::from(arg));
        }
    }
    let started = Instant::now();
    let mut products = Vec::new();
    for file in &files {
        let (records, _, _) = read_file(file, &ReadOptions::default())?;
        products.extend(records.flatten());
    }
    let read_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut clean = 0usize;
    for chunk in products.chunks(batch) {
        clean += clean_batch(chunk)?.iter().filter(|v| matches!(v, Verdict::Clean { .. })).count();
    }
    let clean_seconds = started.elapsed().as_secs_f64();
    let rows = products.len();
    println!(
        "{}",
        serde_json::json!({
            "rows": rows, "clean": clean, "batch": batch,
            "threads": std::env::var("POLARS_MAX_THREADS").ok().and_then(|t| t.parse::<usize>().ok())
                .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)),
            "read_seconds": read_seconds, "clean_seconds": clean_seconds,
            "read_rows_per_s": rows as f64 / read_seconds, "clean_rows_per_s": rows as f64 / clean_seconds,
            "total_rows_per_s": rows as f64 / (read_seconds + clean_seconds),
        })
    );
    Ok(())
}
