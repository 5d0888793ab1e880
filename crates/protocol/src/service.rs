//! What every lab8 service shares at run time: logging, SIGTERM handling,
//! `/healthz` `/readyz` `/metrics`, and waiting for a dependency to be ready.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// Log format (`LOG_FORMAT`): `text` for people, `json` for the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Logging and shutdown flags shared by every binary.
#[derive(Debug, Clone, clap::Args)]
pub struct RuntimeArgs {
    /// Log format.
    #[arg(long = "log-format", env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// After SIGTERM, exit anyway when the batch in hand is not finished
    /// within this many seconds (keep it below terminationGracePeriodSeconds).
    #[arg(long = "shutdown-timeout-secs", env = "SHUTDOWN_TIMEOUT_SECS", default_value_t = 25)]
    pub shutdown_timeout_secs: u64,
}

impl RuntimeArgs {
    /// Installs logging.
    pub fn init(&self) {
        init_tracing(self.log_format);
    }

    /// A shutdown latch triggered by SIGTERM/SIGINT, with the drain deadline.
    pub fn shutdown(&self) -> Shutdown {
        Shutdown::on_signals(Duration::from_secs(self.shutdown_timeout_secs))
    }
}

/// Installs the global subscriber; the filter comes from `RUST_LOG` (default `info`).
/// Logs go to stderr so that command output on stdout stays clean.
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// A shutdown latch: triggered by SIGTERM/SIGINT or by hand (tests).
#[derive(Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
    rx: watch::Receiver<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        let (tx, rx) = watch::channel(false);
        Self { tx: Arc::new(tx), rx }
    }
}

impl Shutdown {
    /// A latch that SIGTERM and SIGINT trigger. If the drain takes longer
    /// than `deadline`, the process exits anyway (and says so): what was not
    /// acknowledged stays pending and is redelivered.
    pub fn on_signals(deadline: Duration) -> Self {
        let shutdown = Self::default();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received: finishing the batch in hand, then exiting"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received: finishing the batch in hand, then exiting"),
            }
            trigger.trigger();
            tokio::time::sleep(deadline).await;
            tracing::error!(
                ?deadline,
                "drain deadline (SHUTDOWN_TIMEOUT_SECS) hit: exiting; unacknowledged entries will be redelivered"
            );
            std::process::exit(1);
        });
        shutdown
    }

    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once triggered.
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|stopped| *stopped).await;
    }
}

/// Readiness latch: `/readyz` answers 503 until set.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MetricKind {
    Counter,
    Gauge,
}

#[derive(Debug)]
struct Family {
    help: &'static str,
    kind: MetricKind,
    series: BTreeMap<String, f64>,
}

/// A small Prometheus registry: counters and gauges with optional labels,
/// rendered in the text exposition format.
#[derive(Clone, Default)]
pub struct Metrics(Arc<Mutex<BTreeMap<&'static str, Family>>>);

impl Metrics {
    fn update(
        &self,
        name: &'static str,
        help: &'static str,
        kind: MetricKind,
        labels: &[(&str, &str)],
        f: impl FnOnce(&mut f64),
    ) {
        let label_text = if labels.is_empty() {
            String::new()
        } else {
            let parts: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
                .collect();
            format!("{{{}}}", parts.join(","))
        };
        let mut families = self.0.lock().expect("metrics lock");
        let family = families.entry(name).or_insert_with(|| Family { help, kind, series: BTreeMap::new() });
        f(family.series.entry(label_text).or_insert(0.0));
    }

    /// Adds to a counter (`name` should end in `_total`).
    pub fn inc(&self, name: &'static str, help: &'static str, labels: &[(&str, &str)], by: u64) {
        self.update(name, help, MetricKind::Counter, labels, |v| *v += by as f64);
    }

    /// Sets a gauge.
    pub fn set(&self, name: &'static str, help: &'static str, labels: &[(&str, &str)], value: f64) {
        self.update(name, help, MetricKind::Gauge, labels, |v| *v = value);
    }

    /// Current value of a series (tests and logs).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let families = self.0.lock().expect("metrics lock");
        let family = families.get(name)?;
        let wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        let key = if wanted.is_empty() { String::new() } else { format!("{{{}}}", wanted.join(",")) };
        family.series.get(&key).copied()
    }

    pub fn render(&self) -> String {
        let families = self.0.lock().expect("metrics lock");
        let mut out = String::new();
        for (name, family) in families.iter() {
            let kind = match family.kind {
                MetricKind::Counter => "counter",
                MetricKind::Gauge => "gauge",
            };
            out.push_str(&format!("# HELP {name} {}\n# TYPE {name} {kind}\n", family.help));
            for (labels, value) in &family.series {
                out.push_str(&format!("{name}{labels} {value}\n"));
            }
        }
        out
    }
}

/// An HTTP error answered as JSON `{"error": …}` with its status.
#[derive(Debug)]
pub struct HttpError(pub StatusCode, pub String);

impl axum::response::IntoResponse for HttpError {
    fn into_response(self) -> axum::response::Response {
        (self.0, axum::Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

/// State behind the operational endpoints.
#[derive(Clone, Default)]
pub struct Ops {
    pub readiness: Readiness,
    pub metrics: Metrics,
}

/// `/healthz` (always 200 while the process serves), `/readyz` (200 once
/// ready) and `/metrics`. Services merge their own routes into it.
pub fn ops_router<S: Clone + Send + Sync + 'static>(ops: Ops) -> Router<S> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|State(ops): State<Ops>| async move {
                if ops.readiness.is_ready() {
                    (StatusCode::OK, "ready\n")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                }
            }),
        )
        .route("/metrics", get(|State(ops): State<Ops>| async move { ops.metrics.render() }))
        .with_state(ops)
}

/// Serves `router` on `addr` until `shutdown`; returns the bound address
/// (port 0 picks a free one) and the server task.
pub async fn serve_http(
    addr: SocketAddr,
    router: Router,
    shutdown: Shutdown,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tracing::info!(%local, "HTTP listening");
    let task = tokio::spawn(async move {
        axum::serve(listener, router).with_graceful_shutdown(async move { shutdown.wait().await }).await
    });
    Ok((local, task))
}

/// Status code of an HTTP GET on `url` (`http://host:port/path`), with a
/// minimal HTTP/1.1 client so init containers need nothing but our binaries.
pub async fn http_get_status(url: &str, timeout: Duration) -> std::io::Result<u16> {
    let invalid = || std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("not an http:// URL: {url}"));
    let rest = url.strip_prefix("http://").ok_or_else(invalid)?;
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".to_string()));
    let request = async {
        let mut stream = tokio::net::TcpStream::connect(host).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())
            .await?;
        let mut head = vec![0u8; 64];
        let n = stream.read(&mut head).await?;
        let line = String::from_utf8_lossy(&head[..n]);
        line.split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no HTTP status line"))
    };
    tokio::time::timeout(timeout, request)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "HTTP request timed out"))?
}

/// Waits until every URL answers 200 or `timeout` passes (init containers
/// use it to start services in order: source → mart → model).
pub async fn wait_ready(urls: &[String], timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    for url in urls {
        loop {
            match http_get_status(url, Duration::from_secs(2)).await {
                Ok(200) => {
                    tracing::info!(%url, "dependency ready");
                    break;
                }
                other if Instant::now() >= deadline => {
                    return Err(format!("{url} not ready after {timeout:?}: {other:?}"))
                }
                other => tracing::info!(%url, status = ?other, "waiting for dependency"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    Ok(())
}

/// Consumer-group settings shared by the mart and the model.
#[derive(Debug, Clone, clap::Args)]
pub struct ConsumerArgs {
    /// Consumer name in the consumer groups, unique per replica; defaults to
    /// `HOSTNAME` (the pod name in the cluster).
    #[arg(long = "consumer-name", env = "CONSUMER_NAME")]
    pub consumer_name: Option<String>,
    /// Largest batch read from a stream at once.
    #[arg(long = "batch-size", env = "BATCH_SIZE", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub batch_size: u64,
    /// How long a read waits for new entries, in milliseconds.
    #[arg(long = "block-ms", env = "BLOCK_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub block_ms: u64,
    /// Entries pending this long at another consumer (a dead replica) are taken over.
    #[arg(long = "claim-idle-secs", env = "CLAIM_IDLE_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub claim_idle_secs: u64,
}

impl ConsumerArgs {
    pub fn name(&self) -> String {
        self.consumer_name
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_string()))
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "lab8".to_string())
    }
}

impl From<&ConsumerArgs> for crate::bus::ConsumerOptions {
    fn from(args: &ConsumerArgs) -> Self {
        Self {
            batch: args.batch_size as usize,
            block: Duration::from_millis(args.block_ms),
            claim_idle: Duration::from_secs(args.claim_idle_secs),
        }
    }
}

/// `wait-ready URL…`: the subcommand init containers run to start services in order.
#[derive(Debug, Clone, clap::Args)]
pub struct WaitReadyArgs {
    /// URLs that must answer 200, e.g. `http://lab8-source:8080/readyz`.
    #[arg(required = true)]
    pub urls: Vec<String>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
}

impl WaitReadyArgs {
    pub async fn run(&self) -> anyhow::Result<()> {
        wait_ready(&self.urls, Duration::from_secs(self.timeout_secs)).await.map_err(anyhow::Error::msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_in_exposition_format() {
        let m = Metrics::default();
        m.inc("lab8_x_total", "things", &[("reason", "a\"b")], 2);
        m.inc("lab8_x_total", "things", &[("reason", "a\"b")], 1);
        m.set("lab8_ready", "ready", &[], 1.0);
        let text = m.render();
        assert!(text.contains("# TYPE lab8_x_total counter"));
        assert!(text.contains("lab8_x_total{reason=\"a\\\"b\"} 3"));
        assert!(text.contains("lab8_ready 1"));
        assert_eq!(m.get("lab8_ready", &[]), Some(1.0));
    }

    #[tokio::test]
    async fn ops_endpoints_answer_and_readiness_latches() {
        let ops = Ops::default();
        let shutdown = Shutdown::default();
        let (addr, task) =
            serve_http("127.0.0.1:0".parse().unwrap(), ops_router(ops.clone()), shutdown.clone()).await.unwrap();
        let url = |p: &str| format!("http://{addr}{p}");
        assert_eq!(http_get_status(&url("/healthz"), Duration::from_secs(2)).await.unwrap(), 200);
        assert_eq!(http_get_status(&url("/readyz"), Duration::from_secs(2)).await.unwrap(), 503);
        ops.readiness.set(true);
        wait_ready(&[url("/readyz")], Duration::from_secs(5)).await.unwrap();
        assert_eq!(http_get_status(&url("/metrics"), Duration::from_secs(2)).await.unwrap(), 200);
        shutdown.trigger();
        task.await.unwrap().unwrap();
    }
}
