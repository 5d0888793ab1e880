use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use lab8_bus::{Bus, ConsumerArgs, ConsumerOptions, RedisArgs};
use lab8_mart::api::{self, ApiState};
use lab8_mart::materialise::{rebuild_all, render_profiles};
use lab8_mart::{service, MartConfig, MartMetrics};
use lab8_service::{ops_router, serve_http, Ops, RuntimeArgs, WaitReadyArgs};

/// lab8-mart: cleans raw products, feeds the model, materialises clusters.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    runtime: RuntimeArgs,
    #[command(flatten)]
    consumer: ConsumerArgs,
    /// Drain what is in the streams, print the cluster profiles and exit.
    #[arg(long)]
    once: bool,
    /// Address of the web page (`/`), the read API (`/api/v1`), health, readiness and metrics.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8081")]
    listen: SocketAddr,
    /// Least seconds between two recomputations of the cluster profiles.
    #[arg(long, env = "PROFILE_INTERVAL_SECS", default_value_t = 5)]
    profile_interval_secs: u64,
    /// Trim stream entries that every consumer group has acknowledged (never
    /// an unacknowledged one); `false` keeps the streams' history.
    #[arg(long, env = "TRIM_ACKNOWLEDGED", default_value_t = true, action = clap::ArgAction::Set)]
    trim_acknowledged: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Wait until every URL answers 200 (init containers).
    WaitReady(WaitReadyArgs),
    /// Recompute every live model's cluster aggregates from the product and
    /// assignment tables and replace the incremental ones (repair: stop the
    /// mart first); with --check, compare instead and exit 1 on a difference.
    Rebuild {
        #[arg(long)]
        check: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cli.runtime.init();
    match cli.command {
        Some(Command::WaitReady(args)) => return args.run().await,
        Some(Command::Rebuild { check }) => {
            let bus = Bus::connect(&cli.redis).await?;
            let differences = rebuild_all(&bus, check).await?;
            if !differences.is_empty() {
                anyhow::bail!("incremental aggregates differ from a rebuild:\n{}", differences.join("\n"));
            }
            return Ok(());
        }
        None => {}
    }
    let config = MartConfig {
        consumer: cli.consumer.name(),
        consumer_options: ConsumerOptions::from(&cli.consumer),
        profile_interval: Duration::from_secs(cli.profile_interval_secs),
        trim_acknowledged: cli.trim_acknowledged,
    };
    let ops = Ops::default();
    if cli.once {
        let bus = Bus::connect(&cli.redis).await?;
        let report = service::drain(&bus, &config, &MartMetrics::register(&ops.metrics)).await?;
        println!(
            "mart: {} raw entries and {} predictions processed; {} products, {} with a cluster",
            report.raw_entries, report.prediction_entries, report.products, report.assigned
        );
        if report.profiles.is_empty() {
            println!("no clusters yet: score the feature rows with lab8-model, then run the mart again");
        } else {
            print!("{}", render_profiles(&report.profiles));
        }
        return Ok(());
    }
    let shutdown = cli.runtime.shutdown();
    // The read API answers 503 until Redis is connected; /healthz at once.
    let api = ApiState::default();
    let (_, server) = serve_http(cli.listen, api::router(api.clone()).merge(ops_router(ops.clone())), shutdown.clone())
        .await
        .with_context(|| format!("LISTEN_ADDR {}", cli.listen))?;
    let bus = Bus::connect(&cli.redis).await?;
    api.set_bus(bus.clone());
    service::run(bus, config, ops, shutdown).await?;
    server.await??;
    Ok(())
}
