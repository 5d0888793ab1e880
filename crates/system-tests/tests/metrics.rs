//! What an operator reads on `/metrics`, against a real redis-server: each
//! consumer group's backlog and pending count as Redis reports them (read
//! here with XINFO GROUPS), the commit latency histogram, the model version
//! served and shown.

use std::time::{Duration, Instant};

use lab8_bus::testing::RedisServer;
use lab8_bus::{Bus, ConsumerOptions};
use lab8_mart::{service, MartConfig};
use lab8_model::service::{score_stream, ModelMetrics};
use lab8_model::{ModelArtifact, DEFAULT_ARTIFACT_PATH};
use lab8_protocol::keys::MODEL_GROUP;
use lab8_service::{Metrics, Ops, Shutdown};
use lab8_source::input::ReadOptions;
use lab8_source::Loader;
use lab8_system_tests::{root, sample_files};

/// The value of the series `name{labels}` in a rendered registry.
fn sample(rendered: &str, series: &str) -> Option<f64> {
    rendered.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A field of the group's XINFO GROUPS entry, read here independently of the code under test.
async fn xinfo(bus: &Bus, stream: &str, group: &str, name: &str) -> Option<u64> {
    let groups: Vec<Vec<redis::Value>> =
        redis::cmd("XINFO").arg("GROUPS").arg(stream).query_async(&mut bus.conn()).await.ok()?;
    let fields = |g: &Vec<redis::Value>| -> Vec<(String, redis::Value)> {
        g.chunks(2).map(|kv| (redis::from_redis_value_ref::<String>(&kv[0]).unwrap(), kv[1].clone())).collect()
    };
    let entry = groups.iter().map(fields).find(|f| {
        f.iter().any(|(k, v)| k == "name" && redis::from_redis_value_ref::<String>(v).ok().as_deref() == Some(group))
    })?;
    entry.iter().find(|(k, _)| k == name).and_then(|(_, v)| redis::from_redis_value_ref(v).ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_backlogs_commit_latency_and_model_versions() {
    let redis = RedisServer::start();
    let bus = redis.bus("metrics:").await;
    // The model's group, as a model that has started but not read yet leaves it.
    bus.ensure_group(&bus.keys().features_stream(), MODEL_GROUP).await.unwrap();
    let options = ReadOptions { category_from_file_name: true, ..Default::default() };
    Loader::new(&bus).load_files(&sample_files()[..1], &options, 1000, false).await.unwrap();
    let config = MartConfig {
        consumer: "metrics".into(),
        consumer_options: ConsumerOptions::default(),
        profile_interval: Duration::from_millis(200),
        trim_acknowledged: false,
    };
    let (ops, shutdown) = (Ops::default(), Shutdown::default());
    // The mart runs beside the checks (its future is not Send: joined, not spawned).
    let mart = service::run(bus.clone(), config, ops.clone(), shutdown.clone());
    let checks = async {
        check(&bus, &ops).await;
        shutdown.trigger();
    };
    let (ran, ()) = tokio::join!(mart, checks);
    ran.unwrap();
}

async fn check(bus: &Bus, ops: &Ops) {
    let features = format!(r#"lab8_stream_backlog{{stream="{}",group="model"}}"#, bus.keys().features_stream());

    // The model's group exists but no model reads: the features wait, and
    // the gauges say how many, as Redis's own XINFO GROUPS does.
    eventually("the features' backlog on /metrics", async || {
        let lag = xinfo(bus, &bus.keys().features_stream(), MODEL_GROUP, "lag").await.unwrap_or(0);
        lag > 100 && sample(&ops.metrics.render(), &features) == Some(lag as f64)
    })
    .await;
    let pending = format!(r#"lab8_stream_pending{{stream="{}",group="model"}}"#, bus.keys().features_stream());
    assert_eq!(sample(&ops.metrics.render(), &pending), Some(0.0), "nothing delivered to the model yet");
    let rendered = ops.metrics.render();
    let raw_commits = format!(r#"lab8_commit_seconds_count{{stream="{}"}}"#, bus.keys().raw_stream());
    assert!(sample(&rendered, &raw_commits).is_some_and(|n| n >= 1.0), "{rendered}");
    assert!(rendered.contains(r#"lab8_commit_seconds_bucket{le="0.001","#), "buckets from 1 ms: {rendered}");

    // The model drains them: the backlog goes to 0, both sides name the version.
    let model = ModelArtifact::read_zip(&root().join(DEFAULT_ARTIFACT_PATH)).unwrap();
    let model_metrics = Metrics::default();
    let registered = ModelMetrics::register(&model_metrics);
    score_stream(bus, &model, &registered, "metrics", ConsumerOptions::default(), &Shutdown::default(), true)
        .await
        .unwrap();
    let version = format!(r#"{{model_version="{}"}}"#, model.model_version);
    eventually("a drained backlog and the current model on /metrics", async || {
        let rendered = ops.metrics.render();
        sample(&rendered, &features) == Some(0.0)
            && sample(&rendered, &pending) == Some(0.0)
            && sample(&rendered, &format!("lab8_mart_current_model{version}")) == Some(1.0)
    })
    .await;
    let rendered = model_metrics.render();
    assert_eq!(sample(&rendered, &format!("lab8_model_info{version}")), Some(1.0), "{rendered}");
    let feature_commits = format!(r#"lab8_commit_seconds_count{{stream="{}"}}"#, bus.keys().features_stream());
    assert!(sample(&rendered, &feature_commits).is_some_and(|n| n >= 1.0), "{rendered}");
}
