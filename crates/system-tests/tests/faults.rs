//! Faults against real processes and a real redis-server (AOF on): the mart
//! and the model are killed with SIGKILL at random points of a large run and
//! restarted, Redis is killed and restarted mid-run, and the final mart must
//! equal the one a run without faults gives — nothing lost, nothing twice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lab8_bus::inspect::{backlog, entries_added};
use lab8_bus::maintenance::scan_hash;
use lab8_bus::testing::{RedisOptions, RedisServer};
use lab8_bus::{Bus, ConsumerOptions};
use lab8_mart::{service, MartConfig, MartMetrics};
use lab8_model::artifact::unpack;
use lab8_model::service::{score_stream, ModelMetrics};
use lab8_model::DEFAULT_ARTIFACT_PATH;
use lab8_protocol::messages::Stage;
use lab8_protocol::messages::{ClusterProfile, Prediction};
use lab8_service::Shutdown;
use lab8_source::input::ReadOptions;
use lab8_source::Loader;
use lab8_system_tests::{binary, root, sample_files};

const REPEAT: usize = 4;
const KILLS_EACH: usize = 10;

/// The sample repeated with prefixed codes: REPEAT × 16,014 distinct products.
fn big_input(dir: &Path) -> PathBuf {
    let out = dir.join("big.tsv");
    let mut text = String::new();
    let files = sample_files();
    for r in 0..REPEAT {
        for (i, file) in files.iter().enumerate() {
            let content = std::fs::read_to_string(file).unwrap();
            for (n, line) in content.lines().enumerate() {
                if n == 0 {
                    if r == 0 && i == 0 {
                        text.push_str(line);
                        text.push('\n');
                    }
                    continue;
                }
                text.push_str(&format!("r{r}-{line}\n"));
            }
        }
    }
    std::fs::write(&out, text).unwrap();
    out
}

/// A small deterministic PRNG (xorshift), seeded per run and printed.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// A child process killed when dropped, so a failing test leaves none behind.
struct Service(Child);

impl Service {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Services {
    redis_url: String,
    password_file: PathBuf,
    model_dir: PathBuf,
    logs: PathBuf,
}

impl Services {
    fn spawn(&self, which: &str, restarts: usize) -> Service {
        let log = std::fs::File::create(self.logs.join(format!("{which}-{restarts}.log"))).unwrap();
        let mut command = match which {
            "mart" => Command::new(binary("lab8-mart")),
            _ => {
                let mut c = Command::new(binary("lab8-model"));
                c.arg("serve");
                c
            }
        };
        command
            .env("REDIS_URL", &self.redis_url)
            .env("REDIS_PASSWORD_FILE", &self.password_file)
            .env("KEY_PREFIX", "f:")
            .env("CONSUMER_NAME", which)
            // Small batches: many commit points to die between, and a run
            // long enough for ten kills.
            .env("BATCH_SIZE", if which == "mart" { "20" } else { "10" })
            .env("CLAIM_IDLE_SECS", "2")
            .env("PROFILE_INTERVAL_SECS", "1")
            .env("TRIM_ACKNOWLEDGED", "true")
            .env("MODEL_DIR", &self.model_dir)
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        Service(command.spawn().unwrap())
    }
}

async fn mart_state(bus: &Bus) -> (BTreeMap<String, String>, BTreeMap<String, u32>, BTreeMap<String, String>) {
    let mut conn = bus.conn.clone();
    let keys = bus.keys();
    let products = scan_hash(&mut conn, &keys.mart_products()).await.unwrap().into_iter().collect();
    let assignments = scan_hash(&mut conn, &keys.mart_assignments())
        .await
        .unwrap()
        .into_iter()
        .map(|(code, json)| (code, serde_json::from_str::<Prediction>(&json).unwrap().cluster))
        .collect();
    let rejections = scan_hash(&mut conn, &keys.rejections(Stage::Mart)).await.unwrap().into_iter().collect();
    (products, assignments, rejections)
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

/// Whether everything is processed, and a description of the state.
async fn settled(bus: &Bus) -> (bool, String) {
    let mut conn = bus.conn.clone();
    let keys = bus.keys();
    let Ok(raw) = entries_added(&mut conn, &keys.raw_stream()).await else { return (false, "redis down".into()) };
    let (products, assignments, rejections) = mart_state(bus).await;
    let rejected: u64 = rejections.values().map(|v| v.parse::<u64>().unwrap()).sum();
    let mut backlogs = Vec::new();
    for (stream, group) in
        [(keys.raw_stream(), "mart"), (keys.features_stream(), "model"), (keys.predictions_stream(), "mart")]
    {
        backlogs.push(backlog(bus, &stream, group).await.unwrap_or(u64::MAX / 4));
    }
    let done = raw > 0
        && products.len() as u64 + rejected == raw
        && assignments.len() == products.len()
        && backlogs.iter().all(|b| *b == 0);
    let state = format!(
        "raw {raw}, products {}, rejected {rejected}, assigned {}, backlogs {backlogs:?}",
        products.len(),
        assignments.len()
    );
    (done, state)
}

async fn profile_total(bus: &Bus) -> u64 {
    let mut conn = bus.conn.clone();
    scan_hash(&mut conn, &bus.keys().mart_clusters())
        .await
        .unwrap()
        .iter()
        .map(|(_, v)| serde_json::from_str::<ClusterProfile>(v).unwrap().count)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_and_redis_restarts_lose_nothing_and_count_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let input = big_input(dir.path());
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

    // The run under faults: password, AOF with fsync per write.
    let mut redis = RedisServer::start_with(RedisOptions { password: Some("fault-test-pw".into()), aof: true });
    let bus = redis.bus("f:").await;
    Loader::new(&bus).load_files(std::slice::from_ref(&input), &ReadOptions::default(), 1000, false).await.unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let services = Services {
        redis_url: redis.url(),
        password_file: redis.args("f:").password_file.unwrap(),
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
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (done, state) = settled(&bus).await;
        if done {
            break;
        }
        if Instant::now() >= deadline {
            let kept = dir.keep();
            panic!("the mart did not settle after the faults: {state}; logs in {}", kept.join("logs").display());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await; // one profile refresh
    let got = mart_state(&bus).await;
    let total = profile_total(&bus).await;
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
    assert_eq!((mart_kills, model_kills, redis_restarts), (KILLS_EACH, KILLS_EACH, 1));
    assert!(
        mart_kills_mid_run == KILLS_EACH && model_kills_mid_run == KILLS_EACH,
        "the kills must hit a run in progress"
    );
}
