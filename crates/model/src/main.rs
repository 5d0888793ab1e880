use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use lab8_bus::{Bus, ConsumerArgs, ConsumerOptions, RedisArgs};
use lab8_model::artifact::{unpack, ModelArtifact, DEFAULT_ARTIFACT_PATH};
use lab8_model::service::{backfill, backfill_loop, router, score_stream, training_rows, ModelMetrics};
use lab8_model::train::{train, KChoice, TrainOptions};
use lab8_service::auth::ApiAuthArgs;
use lab8_service::{serve_http, Ops, RuntimeArgs, Shutdown, WaitReadyArgs};

/// lab8-model: KMeans training, the model artifact, and scoring.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    runtime: RuntimeArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train on the mart's product table in Redis and write the artifact zip.
    Train {
        #[command(flatten)]
        redis: RedisArgs,
        /// Number of clusters; without it k is chosen by silhouette in --k-min..=--k-max.
        #[arg(long, env = "MODEL_K")]
        k: Option<usize>,
        #[arg(long, default_value_t = 3)]
        k_min: usize,
        #[arg(long, default_value_t = 12)]
        k_max: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Rows used for silhouettes.
        #[arg(long, default_value_t = 2000)]
        silhouette_sample: usize,
        #[arg(long, short, default_value = DEFAULT_ARTIFACT_PATH)]
        output: PathBuf,
    },
    /// Score feature rows from the mart and serve /predict until SIGTERM.
    Serve {
        #[command(flatten)]
        redis: RedisArgs,
        #[command(flatten)]
        consumer: ConsumerArgs,
        /// Unpacked model directory (holds model.json).
        #[arg(long, env = "MODEL_DIR", default_value = "/opt/model")]
        model_dir: PathBuf,
        #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8082")]
        listen: SocketAddr,
        #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
        max_body_bytes: usize,
        /// Score what is in the stream (and one backfill pass), then exit (no HTTP).
        #[arg(long)]
        once: bool,
        /// Seconds between two backfill passes (re-scoring the mart's
        /// products while this model is newer than the mart's current one).
        #[arg(long, env = "BACKFILL_INTERVAL_SECS", default_value_t = 10)]
        backfill_interval_secs: u64,
        #[command(flatten)]
        auth: ApiAuthArgs,
    },
    /// Unpack a model zip into a directory (the init container's job).
    Unpack { zip: PathBuf, dir: PathBuf },
    /// Wait until every URL answers 200 (init containers).
    WaitReady(WaitReadyArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cli.runtime.init();
    match cli.command {
        Command::WaitReady(args) => args.run().await,
        Command::Unpack { zip, dir } => {
            let model = unpack(&zip, &dir)?;
            println!("unpacked model {} (k = {}) into {}", model.model_version, model.k, dir.display());
            Ok(())
        }
        Command::Train { redis, k, k_min, k_max, seed, silhouette_sample, output } => {
            let bus = Bus::connect(&redis).await?;
            let rows = training_rows(&bus).await?;
            tracing::info!(rows = rows.len(), "training rows read");
            let k = match k {
                Some(k) => KChoice::Fixed(k),
                None => KChoice::BySilhouette { min: k_min, max: k_max },
            };
            let options = TrainOptions { k, seed, silhouette_sample, ..Default::default() };
            let fit_started = std::time::Instant::now();
            let trained = tokio::task::spawn_blocking(move || train(rows, &options)).await??;
            let fit_seconds = fit_started.elapsed().as_secs_f64();
            let model = trained.artifact;
            model.write_zip(&output)?;
            let mut sizes = vec![0usize; model.k];
            trained.labels.iter().for_each(|&l| sizes[l] += 1);
            println!(
                "trained k = {} on {} rows: inertia {:.1}, silhouette {:.4}",
                model.k, model.training.training_rows, model.training.inertia, model.training.silhouette
            );
            for (k, s) in &model.training.silhouette_by_k {
                println!("  k = {k:>2}  silhouette {s:.4}");
            }
            println!("cluster sizes: {sizes:?}");
            println!("fit time: {fit_seconds:.3} s");
            println!("artifact: {}", output.display());
            Ok(())
        }
        Command::Serve { redis, consumer, model_dir, listen, max_body_bytes, once, backfill_interval_secs, auth } => {
            // Checked first: a bad setting fails fast (not needed by --once, which serves no HTTP).
            let auth = if once { None } else { Some(auth.load()?) };
            let model = Arc::new(ModelArtifact::load_dir(&model_dir)?);
            tracing::info!(model_version = %model.model_version, k = model.k, dir = %model_dir.display(), "model loaded");
            let bus = Bus::connect(&redis).await?;
            let ops = Ops::default();
            let metrics = ModelMetrics::register(&ops.metrics);
            let options = ConsumerOptions::from(&consumer);
            if once {
                let scored =
                    score_stream(&bus, &model, &metrics, &consumer.name(), options, &Shutdown::default(), true).await?;
                let backfilled = backfill(&bus, &model, &metrics).await?;
                println!(
                    "model {}: {scored} feature rows scored, {backfilled} products backfilled",
                    model.model_version
                );
                return Ok(());
            }
            let shutdown = cli.runtime.shutdown();
            let (_, server) = serve_http(
                listen,
                router(
                    model.clone(),
                    ops.clone(),
                    metrics.clone(),
                    max_body_bytes,
                    auth.expect("loaded unless --once"),
                ),
                shutdown.clone(),
            )
            .await
            .with_context(|| format!("LISTEN_ADDR {listen}"))?;
            ops.readiness.set(true);
            let interval = std::time::Duration::from_secs(backfill_interval_secs.max(1));
            let consumer_name = consumer.name();
            let (scored, ()) = tokio::join!(
                score_stream(&bus, &model, &metrics, &consumer_name, options, &shutdown, false),
                backfill_loop(&bus, &model, &metrics, interval, &shutdown)
            );
            tracing::info!(scored = scored?, "model stopped");
            server.await??;
            Ok(())
        }
    }
}
