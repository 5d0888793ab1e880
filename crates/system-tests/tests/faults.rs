//! Faults against real processes and a real redis-server (AOF on): the mart
//! and the model are killed with SIGKILL at random points of a large run and
//! restarted, Redis is killed and restarted mid-run, and the final mart must
//! equal the one a run without faults gives — nothing lost, nothing twice.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use lab8_bus::inspect::backlog;
use lab8_bus::testing::{RedisOptions, RedisServer};
use lab8_bus::{Bus, ConsumerOptions};
use lab8_mart::{service, MartConfig, MartMetrics};
use lab8_model::artifact::unpack;
use lab8_model::service::{score_stream, ModelMetrics};
use lab8_model::DEFAULT_ARTIFACT_PATH;
use lab8_protocol::messages::ProductRow;
use lab8_service::Shutdown;
use lab8_source::input::ReadOptions;
use lab8_source::Loader;
use lab8_system_tests::harness::{assert_profiles_match_rebuild, settle_within, MartState, Rng, Services};
use lab8_system_tests::{repeated_sample, root};

const REPEAT: usize = 4;
const KILLS_EACH: usize = 10;

async fn mart_state(bus: &Bus) -> (BTreeMap<String, ProductRow>, BTreeMap<String, u32>, BTreeMap<String, String>) {
    let state = MartState::read(bus).await;
    let clusters = state.clusters().into_iter().map(|(code, c)| (code.to_string(), c)).collect();
    (state.products, clusters, state.rejections)
}

/// The backlog of a group, retried across a reconnection (Redis restarts here).
async fn backlog_retrying(bus: &Bus, stream: String, group: &str) -> u64 {
    for _ in 0..50 {
        if let Ok(n) = backlog(bus, &stream, group).await {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no answer from Redis about {stream}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_and_redis_restarts_lose_nothing_and_count_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let input = repeated_sample(dir.path(), REPEAT);
    let model_dir = dir.path().join("model");
    let model = unpack(&root().join(DEFAULT_ARTIFACT_PATH), &model_dir).unwrap();

    // The reference: the same input, no faults, in-process.
    let reference = RedisServer::start();
    let reference_bus = reference.bus("f:").await;
    Loader::new(&reference_bus)
        .load_files(std::slice::from_ref(&input), &ReadOptions::default(), 1000, false)
        .await
        .unwrap();
    let config = MartConfig {
        consumer: "ref".into(),
        consumer_options: ConsumerOptions::default(),
        profile_interval: Duration::from_secs(1),
        trim_acknowledged: false,
    };
    let ops = MartMetrics::default();
    service::drain(&reference_bus, &config, &ops).await.unwrap();
    score_stream(
        &reference_bus,
        &model,
        &ModelMetrics::default(),
        "ref",
        ConsumerOptions::default(),
        &Shutdown::default(),
        true,
    )
    .await
    .unwrap();
    service::drain(&reference_bus, &config, &ops).await.unwrap();
    let expected = mart_state(&reference_bus).await;
    assert_eq!(expected.0.len(), REPEAT * 12_945);

    // The run under faults: password, AOF with fsync per write, and the
    // mart and the model as their own ACL users (least privilege holds
    // through kills, takeovers and restarts too).
    let mut redis = RedisServer::start_with(RedisOptions {
        password: Some("fault-test-pw".into()),
        aof: true,
        users_prefix: Some("f:".into()),
        ..Default::default()
    });
    let bus = redis.bus("f:").await;
    Loader::new(&bus).load_files(std::slice::from_ref(&input), &ReadOptions::default(), 1000, false).await.unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let services = Services {
        redis_url: redis.url(),
        password_file: redis.args("f:").password_file,
        users_dir: Some(redis.dir().to_path_buf()),
        sentinels: Vec::new(),
        prefix: "f:".into(),
        model_dir: model_dir.clone(),
        logs: logs.clone(),
    };
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    println!("fault schedule seed {seed}");
    let mut rng = Rng(seed);
    let started = Instant::now();
    // Phase 1: the mart alone, killed at random points while it has raw work.
    let mut mart = services.spawn("mart", 0);
    let (mut mart_kills, mut model_kills, mut redis_restarts) = (0, 0, 0);
    let (mut mart_kills_mid_run, mut model_kills_mid_run) = (0, 0);
    while mart_kills < KILLS_EACH {
        tokio::time::sleep(Duration::from_millis(100 + rng.below(300))).await;
        if backlog_retrying(&bus, bus.keys().raw_stream(), "mart").await > 0 {
            mart_kills_mid_run += 1;
        }
        mart.kill();
        mart_kills += 1;
        mart = services.spawn("mart", mart_kills);
    }
    // Redis killed and restarted under the running mart; AOF replays.
    redis.restart();
    redis_restarts += 1;
    // Phase 2: the model, killed at random points while it has features to score.
    let mut model = services.spawn("model", 0);
    while model_kills < KILLS_EACH {
        tokio::time::sleep(Duration::from_millis(100 + rng.below(300))).await;
        // Mid-run: the pipeline still has work (the model may have caught up with the mart for a moment).
        let work = backlog_retrying(&bus, bus.keys().features_stream(), "model").await
            + backlog_retrying(&bus, bus.keys().raw_stream(), "mart").await;
        if work > 0 {
            model_kills_mid_run += 1;
        }
        model.kill();
        model_kills += 1;
        model = services.spawn("model", model_kills);
    }
    let faults_done = started.elapsed();
    if let Err(state) = settle_within(&bus, Duration::from_secs(180)).await {
        panic!("the mart did not settle after the faults: {state}; logs in {}", dir.keep().join("logs").display());
    }
    let got = mart_state(&bus).await;
    let total = assert_profiles_match_rebuild(&bus).await;
    mart.kill();
    model.kill();
    println!(
        "{mart_kills} mart kills ({mart_kills_mid_run} mid-run), {model_kills} model kills ({model_kills_mid_run} mid-run), \
         {redis_restarts} Redis restart in {faults_done:?}; settled after {:?}",
        started.elapsed()
    );
    assert_eq!(got.1.len(), expected.1.len(), "assignments");
    assert!(got.0 == expected.0, "the product table differs from the run without faults");
    assert!(got.1 == expected.1, "the assignments differ from the run without faults");
    assert_eq!(got.2, expected.2, "dead-letter counts by reason differ: a record was rejected twice or lost");
    assert_eq!(total as usize, expected.0.len(), "cluster profiles count a product twice or miss one");
    // Since the Redis restart (its log starts empty): nothing the services did was refused.
    let refused = redis.acl_denials().await;
    assert!(refused.is_empty(), "Redis refused the mart's or the model's own work: {refused:#?}");
    assert_profiles_match_rebuild(&reference_bus).await;
    assert_eq!((mart_kills, model_kills, redis_restarts), (KILLS_EACH, KILLS_EACH, 1));
    assert!(
        mart_kills_mid_run == KILLS_EACH && model_kills_mid_run == KILLS_EACH,
        "the kills must hit a run in progress"
    );
}
