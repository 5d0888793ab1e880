//! Benchmark helper (scripts/bench.sh): a constant-rate (open-loop) HTTP load
//! generator, what wrk is not. Request i is due at start + i / RATE whatever
//! happened to the ones before it, and its latency counts from that due time,
//! so a stall of the server (or of this generator) shows in the percentiles
//! instead of slowing the load down (no coordinated omission). A pacing
//! thread hands due requests to a one-thread runtime that keeps connections
//! open; connections are added when requests overlap. The first second is a
//! warm-up at the same rate and is not counted. Any failed request (not 200)
//! fails the run. Prints one JSON line, with the pacing thread's own
//! lateness (a lower bound of the generator's share of the latencies).
//!
//!   bench_rate URL RATE SECONDS BODY_FILE     (env API_TOKEN: a bearer token)

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use lab8_service::client::{Bytes, HttpClient};

const WARM_UP: Duration = Duration::from_secs(1);
const TIMEOUT: Duration = Duration::from_secs(5);

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, rate, seconds, body] = args.as_slice() else {
        anyhow::bail!("usage: bench_rate URL RATE SECONDS BODY_FILE")
    };
    let rate: f64 = rate.parse().context("RATE: requests per second")?;
    let seconds: f64 = seconds.parse().context("SECONDS")?;
    // Shared by every request: cloning them is a reference count, not a copy.
    let body = Bytes::from(std::fs::read(body).with_context(|| body.clone())?);
    let url: Arc<str> = url.as_str().into();
    let authorization: Option<Arc<str>> = std::env::var("API_TOKEN").ok().map(|t| format!("Bearer {t}").into());

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let client = HttpClient::default();
    // (latency from the due time, counted, failed) of each request.
    let outcomes: Arc<Mutex<Vec<(Duration, bool, bool)>>> = Arc::default();
    let warm_up = (rate * WARM_UP.as_secs_f64()) as u64;
    let total = warm_up + (rate * seconds) as u64;
    let start = Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::with_capacity(total as usize);
    // How late this generator handed each request over: its own share of
    // the latencies (a pacing thread preempted on a busy machine).
    let mut lateness = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        if i >= warm_up {
            lateness.push(due.elapsed().as_secs_f64() * 1000.0);
        }
        let (client, outcomes, url, body, authorization) =
            (client.clone(), outcomes.clone(), url.clone(), body.clone(), authorization.clone());
        tasks.push(runtime.spawn(async move {
            let headers: &[(&str, &str)] = match &authorization {
                Some(a) => &[("authorization", a)],
                None => &[],
            };
            let answer = client.send("POST", &url, headers, body, TIMEOUT).await;
            let ok = matches!(answer, Ok(ref r) if r.status == 200);
            // Failures of the warm-up count too; latencies only after it.
            outcomes.lock().expect("not poisoned").push((due.elapsed(), ok && i >= warm_up, !ok));
        }));
    }
    let sent_in = start.elapsed().as_secs_f64();
    runtime.block_on(async {
        for task in tasks {
            task.await.expect("a request task panicked");
        }
    });

    let outcomes = outcomes.lock().expect("not poisoned");
    let failed = outcomes.iter().filter(|(_, _, failed)| *failed).count();
    let mut latencies: Vec<f64> =
        outcomes.iter().filter(|(_, counted, _)| *counted).map(|(d, _, _)| d.as_secs_f64() * 1000.0).collect();
    anyhow::ensure!(failed == 0, "{failed} of {total} requests failed");
    anyhow::ensure!(!latencies.is_empty(), "no request counted: RATE × SECONDS < 1");
    latencies.sort_by(f64::total_cmp);
    lateness.sort_by(f64::total_cmp);
    let quantile_of =
        |sorted: &[f64], q: f64| sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1];
    let quantile = |q: f64| quantile_of(&latencies, q);
    println!(
        "{}",
        serde_json::json!({
            "url": &*url, "target_rate": rate, "achieved_rate": (total - 1) as f64 / sent_in,
            "requests": latencies.len(),
            "p50_ms": quantile(0.50), "p90_ms": quantile(0.90), "p99_ms": quantile(0.99),
            "p999_ms": quantile(0.999), "max_ms": latencies.last().copied().unwrap_or(0.0),
            "send_lateness_p99_ms": quantile_of(&lateness, 0.99),
        })
    );
    Ok(())
}
