//! What every lab8 service shares at run time: logging, SIGTERM handling,
//! `/healthz` `/readyz` `/metrics` (a `prometheus-client` registry), an
//! HTTP client, bearer tokens for the write APIs, and waiting for a
//! dependency to be ready.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

pub mod auth;
pub mod client;

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

/// The process's Prometheus registry. Each service registers its own typed
/// metric families (see `lab8_mart::MartMetrics`) and `/metrics` encodes it.
#[derive(Clone, Default)]
pub struct Metrics(Arc<Mutex<Registry>>);

/// Labels of a metric series, e.g. `[("reason", "malformed_json")]`.
pub type Labels = Vec<(String, String)>;
/// A counter per label set.
pub type CounterFamily = Family<Labels, Counter>;
/// A gauge holding a float.
pub type FloatGauge = Gauge<f64, AtomicU64>;
/// A gauge per label set.
pub type GaugeFamily = Family<Labels, FloatGauge>;
pub use prometheus_client::metrics::counter::Counter as PlainCounter;
/// Durations in seconds per label set, in buckets from 1 ms to about 16 s.
#[derive(Clone)]
pub struct SecondsHistogram(Family<Labels, Histogram, fn() -> Histogram>);

impl Default for SecondsHistogram {
    fn default() -> Self {
        Self(Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 15))))
    }
}

impl SecondsHistogram {
    pub fn observe(&self, labels: &Labels, elapsed: Duration) {
        self.0.get_or_create(labels).observe(elapsed.as_secs_f64());
    }

    /// The family to register.
    pub fn family(&self) -> Family<Labels, Histogram, fn() -> Histogram> {
        self.0.clone()
    }

    /// `lab8_commit_seconds{stream}`, one name and meaning for every stage.
    pub fn register_commit_seconds(metrics: &Metrics) -> Self {
        let this = Self::default();
        metrics.register(
            "lab8_commit_seconds",
            "Time of one batch's atomic commit in Redis (effects and acknowledgements), by stream",
            this.family(),
        );
        this
    }
}

/// Content type of `/metrics` (the encoder writes OpenMetrics text).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One label.
pub fn label(name: &str, value: impl ToString) -> Labels {
    vec![(name.to_string(), value.to_string())]
}

impl Metrics {
    /// Registers a metric (counters get `_total` appended by the encoder).
    pub fn register(&self, name: &str, help: &str, metric: impl prometheus_client::registry::Metric) {
        self.0.lock().expect("metrics lock").register(name, help, metric);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.0.lock().expect("metrics lock"))
            .expect("writing to a String cannot fail");
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
        .route(
            "/metrics",
            get(|State(ops): State<Ops>| async move {
                ([(axum::http::header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], ops.metrics.render())
            }),
        )
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

/// Waits until every URL answers 200 or `timeout` passes (init containers
/// use it to start services in order: source → mart → model).
pub async fn wait_ready(urls: &[String], timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    for url in urls {
        loop {
            match client::get(url, Duration::from_secs(2)).await.map(|r| r.status) {
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

/// `wait-ready URL…`: wait until services answer `/readyz` (scripts and containers outside
/// Kubernetes; in the cluster the update order comes from `wait-rollout`).
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
        let things = CounterFamily::default();
        let ready = FloatGauge::default();
        m.register("lab8_x", "things", things.clone());
        m.register("lab8_ready", "ready", ready.clone());
        things.get_or_create(&label("reason", "a")).inc_by(2);
        things.get_or_create(&label("reason", "a")).inc();
        ready.set(1.0);
        let text = m.render();
        assert!(text.contains("# TYPE lab8_x counter"), "{text}");
        assert!(text.contains("lab8_x_total{reason=\"a\"} 3"), "{text}");
        assert!(text.contains("lab8_ready 1"), "{text}");
    }

    #[tokio::test]
    async fn ops_endpoints_answer_and_readiness_latches() {
        let ops = Ops::default();
        let shutdown = Shutdown::default();
        let (addr, task) =
            serve_http("127.0.0.1:0".parse().unwrap(), ops_router(ops.clone()), shutdown.clone()).await.unwrap();
        let url = |p: &str| format!("http://{addr}{p}");
        let status = |p: &str| {
            let url = url(p);
            async move { client::get(&url, Duration::from_secs(2)).await.unwrap().status }
        };
        assert_eq!(status("/healthz").await, 200);
        assert_eq!(status("/readyz").await, 503);
        assert!(wait_ready(&[url("/readyz")], Duration::from_secs(1)).await.is_err());
        ops.readiness.set(true);
        wait_ready(&[url("/readyz")], Duration::from_secs(5)).await.unwrap();
        assert_eq!(status("/metrics").await, 200);
        shutdown.trigger();
        task.await.unwrap().unwrap();
    }
}
