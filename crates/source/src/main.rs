use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use lab8_bus::{Bus, RedisArgs};
use lab8_service::auth::ApiAuthArgs;
use lab8_service::{serve_http, Ops, RuntimeArgs, WaitReadyArgs};
use lab8_source::http::{router, DEFAULT_MAX_BODY_BYTES};
use lab8_source::input::{Format, ReadOptions};
use lab8_source::Loader;

/// lab8-source: OpenFoodFacts products into the lab8 raw stream.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    runtime: RuntimeArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load export files (TSV, CSV, JSONL; gzip'd or not) into the raw stream.
    Load {
        /// Files to load.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Force the input format instead of guessing from name and content.
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Use the file name as category for products without one.
        #[arg(long)]
        category_from_file_name: bool,
        /// Records per round trip to Redis.
        #[arg(long, env = "LOAD_CHUNK", default_value_t = 1000)]
        chunk: usize,
        /// Hide the progress bar.
        #[arg(long)]
        quiet: bool,
        /// Also print the summary as one JSON line.
        #[arg(long)]
        json: bool,
    },
    /// Serve the HTTP ingest API until SIGTERM.
    Serve {
        #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8080")]
        listen: SocketAddr,
        /// Largest accepted request body.
        #[arg(long, env = "MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
        max_body_bytes: usize,
        #[command(flatten)]
        auth: ApiAuthArgs,
    },
    /// Wait until every URL answers 200 (init containers).
    WaitReady(WaitReadyArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cli.runtime.init();
    match cli.command {
        Command::WaitReady(args) => args.run().await,
        Command::Load { files, format, category_from_file_name, chunk, quiet, json } => {
            let bus = Bus::connect(&cli.redis).await?;
            let mut loader = Loader::new(&bus);
            let options = ReadOptions { format, category_from_file_name };
            let summary = loader.load_files(&files, &options, chunk.max(1), !quiet).await?;
            println!("{summary}");
            if json {
                println!("{}", serde_json::to_string(&summary)?);
            }
            Ok(())
        }
        Command::Serve { listen, max_body_bytes, auth } => {
            let auth = auth.load()?;
            let shutdown = cli.runtime.shutdown();
            let bus = Bus::connect(&cli.redis).await?;
            let ops = Ops::default();
            let (_, server) =
                serve_http(listen, router(Loader::new(&bus), ops.clone(), max_body_bytes, auth), shutdown)
                    .await
                    .with_context(|| format!("LISTEN_ADDR {listen}"))?;
            ops.readiness.set(true);
            server.await??;
            tracing::info!("source stopped");
            Ok(())
        }
    }
}
