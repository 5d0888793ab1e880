//! Real service processes for fault tests, and views of the mart's state
//! the whole-system tests compare.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use lab8_bus::inspect::{backlog, entries_added};
use lab8_bus::maintenance::scan_hash;
use lab8_bus::testing::user_password_file;
use lab8_bus::Bus;
use lab8_mart::materialise::{current_profiles, differences, live_models, read_incremental, rebuild};
use lab8_protocol::acl::Role;
use lab8_protocol::keys::{MART_GROUP, MODEL_GROUP};
use lab8_protocol::messages::{ClusterProfile, Prediction, ProductRow, Stage};
use lab8_protocol::Reason;

use crate::binary;

/// A small deterministic PRNG (xorshift), seeded per run and printed.
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// A child process killed when dropped, so a failing test leaves none behind.
pub struct Service(Child);

impl Service {
    /// SIGKILL: no shutdown path runs.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How to start the mart and the model against one Redis.
pub struct Services {
    pub redis_url: String,
    pub password_file: Option<PathBuf>,
    /// Log in as each service's own ACL user, its password in
    /// `lab8_bus::testing::user_password_file(dir, role)` (a server started
    /// with `RedisOptions::users_prefix`).
    pub users_dir: Option<PathBuf>,
    /// Find the primary through these Sentinels (`REDIS_SENTINELS`) rather than at `redis_url`.
    pub sentinels: Vec<String>,
    pub prefix: String,
    pub model_dir: PathBuf,
    pub logs: PathBuf,
}

impl Services {
    /// Starts `mart` or `model` (`serve`), logging to `<logs>/<which>-<restarts>.log`.
    pub fn spawn(&self, which: &str, restarts: usize) -> Service {
        let log = std::fs::File::create(self.logs.join(format!("{which}-{restarts}.log"))).unwrap();
        let mut command = match which {
            "mart" => Command::new(binary("lab8-mart")),
            _ => {
                let mut c = Command::new(binary("lab8-model"));
                c.arg("serve");
                c
            }
        };
        if let Some(file) = &self.password_file {
            command.env("REDIS_PASSWORD_FILE", file);
        }
        if let Some(dir) = &self.users_dir {
            let role = if which == "mart" { Role::Mart } else { Role::Model };
            command.env("REDIS_USERNAME", role.user()).env("REDIS_PASSWORD_FILE", user_password_file(dir, role));
        }
        if !self.sentinels.is_empty() {
            command.env("REDIS_SENTINELS", self.sentinels.join(","));
        }
        command
            .env("REDIS_URL", &self.redis_url)
            .env("KEY_PREFIX", &self.prefix)
            .env("CONSUMER_NAME", which)
            // Small batches: many commit points to die between.
            .env("BATCH_SIZE", if which == "mart" { "20" } else { "10" })
            .env("CLAIM_IDLE_SECS", "2")
            .env("PROFILE_INTERVAL_SECS", "1")
            .env("BACKFILL_INTERVAL_SECS", "1")
            .env("TRIM_ACKNOWLEDGED", "true")
            .env("MODEL_DIR", &self.model_dir)
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("API_TOKEN", lab8_service::auth::testing::TEST_TOKEN)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        Service(command.spawn().unwrap())
    }
}

/// The mart's tables: product rows, current assignments, rejections by reason.
#[derive(Debug, Clone, PartialEq)]
pub struct MartState {
    pub products: BTreeMap<String, ProductRow>,
    pub assignments: BTreeMap<String, Prediction>,
    pub rejections: BTreeMap<String, String>,
}

impl MartState {
    pub async fn read(bus: &Bus) -> Self {
        let mut conn = bus.conn();
        let keys = bus.keys();
        let products = scan_hash(&mut conn, &keys.mart_products())
            .await
            .unwrap()
            .into_iter()
            .map(|(code, json)| (code, serde_json::from_str(&json).unwrap()))
            .collect();
        let assignments = scan_hash(&mut conn, &keys.mart_assignments())
            .await
            .unwrap()
            .into_iter()
            .map(|(code, json)| (code, serde_json::from_str(&json).unwrap()))
            .collect();
        let rejections = scan_hash(&mut conn, &keys.rejections(Stage::Mart)).await.unwrap().into_iter().collect();
        Self { products, assignments, rejections }
    }

    /// Product → cluster.
    pub fn clusters(&self) -> BTreeMap<&str, u32> {
        self.assignments.iter().map(|(code, p)| (code.as_str(), p.cluster)).collect()
    }
}

/// The backlogs (undelivered + pending) of the three data streams.
pub async fn backlogs(bus: &Bus) -> Vec<u64> {
    let keys = bus.keys();
    let mut out = Vec::new();
    for (stream, group) in [
        (keys.raw_stream(), MART_GROUP),
        (keys.features_stream(), MODEL_GROUP),
        (keys.predictions_stream(), MART_GROUP),
    ] {
        out.push(backlog(bus, &stream, group).await.unwrap_or(u64::MAX / 4));
    }
    out
}

/// Whether everything is processed (raw records arrived, every stream's
/// backlog is zero, every product has a cluster under the current model),
/// and a description of the state.
pub async fn settled(bus: &Bus) -> (bool, String) {
    let mut conn = bus.conn();
    let Ok(raw) = entries_added(&mut conn, &bus.keys().raw_stream()).await else {
        return (false, "redis down".into());
    };
    let state = MartState::read(bus).await;
    let backlogs = backlogs(bus).await;
    // Products too: before the mart has made its groups, every backlog reads 0.
    let done = raw > 0
        && !state.products.is_empty()
        && state.assignments.len() == state.products.len()
        && backlogs.iter().all(|b| *b == 0);
    let description = format!(
        "raw {raw}, products {}, rejections {:?}, assigned {}, backlogs {backlogs:?}",
        state.products.len(),
        state.rejections,
        state.assignments.len()
    );
    (done, description)
}

/// Waits until [`settled`], then for one profile refresh; on a timeout,
/// the state it was left in.
pub async fn settle_within(bus: &Bus, timeout: std::time::Duration) -> Result<(), String> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let (done, state) = settled(bus).await;
        if done {
            break;
        }
        if std::time::Instant::now() >= deadline {
            return Err(state);
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await; // one profile refresh
    Ok(())
}

/// Every raw record is exactly one of: a product row, a row replaced by a
/// newer version, a version ignored as unchanged or stale, a dead letter of
/// the mart. Returns the raw records.
pub async fn assert_every_raw_record_accounted_once(bus: &Bus) -> u64 {
    let mut conn = bus.conn();
    let keys = bus.keys();
    let raw = entries_added(&mut conn, &keys.raw_stream()).await.unwrap();
    let products: u64 = redis::cmd("HLEN").arg(keys.mart_products()).query_async(&mut conn).await.unwrap();
    let replaced: Option<u64> = redis::cmd("GET").arg(keys.mart_replaced()).query_async(&mut conn).await.unwrap();
    let ignored: Vec<Option<u64>> = redis::cmd("HMGET")
        .arg(keys.mart_ignored())
        .arg("unchanged")
        .arg("stale")
        .query_async(&mut conn)
        .await
        .unwrap();
    let rejections = scan_hash(&mut conn, &keys.rejections(Stage::Mart)).await.unwrap();
    // Dead letters of raw records only (a malformed prediction never was one).
    let rejected: u64 = rejections
        .iter()
        .filter(|(reason, _)| reason != Reason::MalformedPrediction.wire_name().as_str())
        .map(|(_, n)| n.parse::<u64>().unwrap())
        .sum();
    let accounted = products + replaced.unwrap_or(0) + ignored.iter().flatten().sum::<u64>() + rejected;
    assert_eq!(
        accounted, raw,
        "raw records accounted for: {products} products, {replaced:?} replaced, {ignored:?} unchanged/stale, {rejected} rejected"
    );
    raw
}

/// Checks the incremental aggregates of every live model against a rebuild
/// from the tables, and that the published profiles count every assigned
/// product once. Returns the number of products the profiles count.
pub async fn assert_profiles_match_rebuild(bus: &Bus) -> u64 {
    let mut conn = bus.conn();
    let keys = bus.keys();
    for version in live_models(&mut conn, keys).await.unwrap() {
        let rebuilt = rebuild(&mut conn, keys, &version).await.unwrap();
        let incremental = read_incremental(&mut conn, keys, &version).await.unwrap();
        let found = differences(&incremental, &rebuilt);
        assert!(found.is_empty(), "model {version}: incremental profiles differ from a rebuild:\n{}", found.join("\n"));
    }
    let mut profiles = current_profiles(&mut conn, keys).await.unwrap();
    // What the API serves: the published table, refreshed from the aggregates.
    let mut published: Vec<ClusterProfile> = scan_hash(&mut conn, &keys.mart_clusters())
        .await
        .unwrap()
        .into_iter()
        .map(|(_, json)| serde_json::from_str(&json).unwrap())
        .collect();
    profiles.sort_by_key(|p| p.cluster);
    published.sort_by_key(|p| p.cluster);
    assert_eq!(published, profiles, "the published profiles are the aggregates' (refresh the mart before checking)");
    let assigned: u64 = redis::cmd("HLEN").arg(keys.mart_assignments()).query_async(&mut conn).await.unwrap();
    let counted: u64 = profiles.iter().map(|p| p.count).sum();
    assert_eq!(counted, assigned, "the profiles count every assigned product once");
    counted
}
