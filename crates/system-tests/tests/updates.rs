//! Products that change and models that change, against a real redis-server:
//! a newer export reconciles to exactly what a fresh load of it gives (with
//! the mart and the model killed mid-load), the version rule at the mart, and
//! the move from one model to the next through a backfill. After each, the
//! incremental profiles equal a rebuild from the tables.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lab8_bus::testing::{RedisOptions, RedisServer};
use lab8_bus::{Bus, ConsumerOptions};
use lab8_mart::materialise::{current_model, current_profiles, switch_model};
use lab8_mart::{service, MartConfig, MartMetrics};
use lab8_model::artifact::unpack;
use lab8_model::service::{backfill, score_stream, training_rows, ModelMetrics};
use lab8_model::train::{train, KChoice, TrainOptions};
use lab8_model::{ModelArtifact, DEFAULT_ARTIFACT_PATH};
use lab8_protocol::acl::Role;
use lab8_protocol::keys::PAYLOAD_FIELD;
use lab8_protocol::messages::{Prediction, RawProduct};
use lab8_service::Shutdown;
use lab8_source::input::{read_file, ReadOptions};
use lab8_source::Loader;
use lab8_system_tests::harness::{
    assert_every_raw_record_accounted_once, assert_profiles_match_rebuild, backlogs, settled, MartState, Rng, Services,
};
use lab8_system_tests::{root, sample_files};

fn config() -> MartConfig {
    MartConfig {
        consumer: "test".into(),
        consumer_options: ConsumerOptions::default(),
        profile_interval: Duration::from_secs(1),
        trim_acknowledged: false,
    }
}

/// The sample's products, one per code (the first record of each).
fn sample_products() -> Vec<RawProduct> {
    let options = ReadOptions { category_from_file_name: true, ..Default::default() };
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for file in sample_files() {
        let (records, _, _) = read_file(&file, &options).unwrap();
        for product in records.flatten() {
            if seen.insert(product.code.clone()) {
                out.push(product);
            }
        }
    }
    out
}

fn write_jsonl(path: &Path, products: &[RawProduct]) -> PathBuf {
    let text: String = products.iter().map(|p| serde_json::to_string(p).unwrap() + "\n").collect();
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

/// The next export: every 10th product changed (name, categories, and its
/// energy halved, which moves some to another cluster), one new product per
/// 20, the rest sent again unchanged. Returns it and (changed, new).
fn next_export(products: &[RawProduct]) -> (Vec<RawProduct>, usize, usize) {
    let mut out = Vec::new();
    let (mut changed, mut new) = (0, 0);
    for (i, product) in products.iter().enumerate() {
        let mut next = product.clone();
        if i % 10 == 0 {
            next.name = Some(format!("{} (reformulated)", next.name.clone().unwrap_or_default()));
            next.categories = Some("en:reformulated".into());
            if let Some(energy) = next.nutrients.get("energy_100g").and_then(|e| e.parse::<f64>().ok()) {
                next.nutrients.insert("energy_100g".into(), format!("{}", (energy / 2.0).round()));
            }
            changed += 1;
        }
        out.push(next);
        if i % 20 == 1 {
            out.push(RawProduct { code: format!("new-{}", product.code), ..product.clone() });
            new += 1;
        }
    }
    (out, changed, new)
}

async fn load(bus: &Bus, file: &Path, chunk: usize) -> lab8_source::LoadSummary {
    Loader::new(bus).load_files(&[file.to_path_buf()], &ReadOptions::default(), chunk, false).await.unwrap()
}

/// Mart, model, mart, in-process (the model announces itself).
async fn process(bus: &Bus, model: &ModelArtifact) {
    let metrics = MartMetrics::default();
    service::drain(bus, &config(), &metrics).await.unwrap();
    let shutdown = Shutdown::default();
    score_stream(bus, model, &ModelMetrics::default(), "test", ConsumerOptions::default(), &shutdown, true)
        .await
        .unwrap();
    service::drain(bus, &config(), &metrics).await.unwrap();
}

async fn wait_settled(bus: &Bus, dir: tempfile::TempDir) -> tempfile::TempDir {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (done, state) = settled(bus).await;
        if done {
            return dir;
        }
        if Instant::now() >= deadline {
            let kept = dir.keep();
            panic!("the mart did not settle: {state}; logs in {}", kept.join("logs").display());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_export_under_kill_nine_equals_a_fresh_load_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let first = sample_products();
    let (second, changed, new) = next_export(&first);
    let first_file = write_jsonl(&dir.path().join("first.jsonl"), &first);
    let second_file = write_jsonl(&dir.path().join("second.jsonl"), &second);
    let model_dir = dir.path().join("model");
    let model = unpack(&root().join(DEFAULT_ARTIFACT_PATH), &model_dir).unwrap();
    let redis = RedisServer::start();

    // The reference: a fresh load of the final state.
    let reference = redis.bus("r:").await;
    load(&reference, &second_file, 1000).await;
    process(&reference, &model).await;
    let expected = MartState::read(&reference).await;
    assert_profiles_match_rebuild(&reference).await;

    // The first export, then the second with the mart and the model killed mid-load.
    let bus = redis.bus("u:").await;
    load(&bus, &first_file, 1000).await;
    process(&bus, &model).await;
    assert_profiles_match_rebuild(&bus).await;
    let before = MartState::read(&bus).await;
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let services = Services {
        redis_url: redis.url(),
        password_file: None,
        users_dir: None,
        sentinels: Vec::new(),
        prefix: "u:".into(),
        model_dir,
        logs: logs.clone(),
    };
    let (mut mart, mut scorer) = (services.spawn("mart", 0), services.spawn("model", 0));
    // The export arrives in slices; after each, the mart or the model is
    // killed (SIGKILL) at a random moment while it has work, and restarted.
    const SLICES: usize = 12;
    let slice_files: Vec<PathBuf> = second
        .chunks(second.len().div_ceil(SLICES))
        .enumerate()
        .map(|(i, slice)| write_jsonl(&dir.path().join(format!("second-{i}.jsonl")), slice))
        .collect();
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    println!("kill schedule seed {seed}");
    let mut rng = Rng(seed);
    let (mut sent, mut unchanged) = (0, 0);
    let (mut kills, mut kills_with_work) = (0, 0);
    for file in &slice_files {
        let summary = load(&bus, file, 50).await;
        (sent, unchanged) = (sent + summary.sent, unchanged + summary.duplicates);
        tokio::time::sleep(Duration::from_millis(rng.below(40))).await;
        if backlogs(&bus).await.iter().sum::<u64>() > 0 {
            kills_with_work += 1;
        }
        kills += 1;
        if kills % 2 == 0 {
            scorer.kill();
            scorer = services.spawn("model", kills);
        } else {
            mart.kill();
            mart = services.spawn("mart", kills);
        }
    }
    let dir = wait_settled(&bus, dir).await;
    tokio::time::sleep(Duration::from_millis(2500)).await; // one profile refresh
    mart.kill();
    scorer.kill();

    assert_eq!(sent as usize, changed + new, "the source sends what changed and what is new");
    assert_eq!(unchanged as usize, first.len() - changed, "and nothing else");
    assert!(kills_with_work >= SLICES / 2, "the kills must hit work in progress ({kills_with_work} of {kills})");
    let got = MartState::read(&bus).await;
    assert_eq!(got.products.len(), expected.products.len());
    assert!(got.products == expected.products, "the product table differs from a fresh load of the final state");
    assert_eq!(got.clusters(), expected.clusters(), "the assignments differ from a fresh load");
    let versions = |s: &MartState| -> BTreeMap<String, String> {
        s.assignments.iter().map(|(c, p)| (c.clone(), p.product_version.clone())).collect()
    };
    assert_eq!(versions(&got), versions(&expected), "every assignment scored the final content");
    // (Rejection counts are not compared: the first export's rejected
    // records were counted once more than in a load of the second alone.)
    let moved = first
        .iter()
        .filter(|p| {
            before.assignments.get(&p.code).map(|a| a.cluster) != got.assignments.get(&p.code).map(|a| a.cluster)
        })
        .count();
    assert!(moved > 0, "some changed products moved to another cluster");
    assert_profiles_match_rebuild(&bus).await;
    assert_every_raw_record_accounted_once(&bus).await;
    assert_every_raw_record_accounted_once(&reference).await;
    let mut conn = bus.conn();
    let (mut got_profiles, mut expected_profiles) = (
        current_profiles(&mut conn, bus.keys()).await.unwrap(),
        current_profiles(&mut reference.conn(), reference.keys()).await.unwrap(),
    );
    got_profiles.sort_by_key(|p| p.cluster);
    expected_profiles.sort_by_key(|p| p.cluster);
    assert_eq!(got_profiles, expected_profiles, "the profiles equal the fresh load's");
    println!("{changed} changed, {new} new, {moved} moved cluster; {kills} kills ({kills_with_work} with work)");
    drop(dir);
}

/// Raw records sent straight to the stream (as the manual test does), so the
/// mart's own version rule is what decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mart_keeps_the_newest_version_of_a_product() {
    let redis = RedisServer::start();
    let bus = redis.bus("v:").await;
    let mut conn = bus.conn();
    let product = |t: Option<i64>, fat: &str| RawProduct {
        code: "p1".into(),
        nutrients: lab8_policy::testing::bread().into_iter().chain([("fat_100g".into(), fat.into())]).collect(),
        last_modified: t,
        ..Default::default()
    };
    let send = async |conn: &mut redis::aio::ConnectionManager, p: &RawProduct| {
        let _: String = redis::cmd("XADD")
            .arg(bus.keys().raw_stream())
            .arg("*")
            .arg(PAYLOAD_FIELD)
            .arg(serde_json::to_string(p).unwrap())
            .query_async(conn)
            .await
            .unwrap();
    };
    let drain = async || service::drain(&bus, &config(), &MartMetrics::default()).await.unwrap();
    send(&mut conn, &product(Some(20), "3")).await;
    send(&mut conn, &product(Some(10), "4")).await; // older: ignored
    send(&mut conn, &product(Some(20), "3")).await; // same: nothing
    drain().await;
    let state = MartState::read(&bus).await;
    assert_eq!(state.products["p1"].x[1], 3.0);
    assert!(state.products["p1"].version.starts_with("20:"));
    send(&mut conn, &product(Some(30), "5")).await; // newer: replaces
    send(&mut conn, &product(None, "6")).await; // no time, other content: newer by arrival
    drain().await;
    let state = MartState::read(&bus).await;
    assert_eq!(state.products["p1"].x[1], 6.0);
    let ignored: BTreeMap<String, u64> =
        redis::cmd("HGETALL").arg(bus.keys().mart_ignored()).query_async(&mut conn).await.unwrap();
    assert_eq!(ignored, BTreeMap::from([("stale".into(), 1), ("unchanged".into(), 1)]));
    assert_eq!(assert_every_raw_record_accounted_once(&bus).await, 5);
    let features: u64 = redis::cmd("XLEN").arg(bus.keys().features_stream()).query_async(&mut conn).await.unwrap();
    assert_eq!(features, 3, "each accepted version went to the model once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_model_backfills_then_replaces_the_old_one_whole() {
    let dir = tempfile::tempdir().unwrap();
    let products = write_jsonl(&dir.path().join("sample.jsonl"), &sample_products());
    // Model B scores and backfills, and the mart switches, as their own ACL users.
    let redis = RedisServer::start_with(RedisOptions { users_prefix: Some("m:".into()), ..Default::default() });
    let bus = redis.bus("m:").await;
    let model_bus = Bus::connect(&redis.args_as("m:", Role::Model)).await.unwrap();
    let mart_bus = Bus::connect(&redis.args_as("m:", Role::Mart)).await.unwrap();
    let mut conn = bus.conn();
    let keys = bus.keys().clone();
    let a = ModelArtifact::read_zip(&root().join(DEFAULT_ARTIFACT_PATH)).unwrap();
    load(&bus, &products, 1000).await;
    process(&bus, &a).await;
    let n = MartState::read(&bus).await.products.len() as u64;
    assert_eq!(current_model(&mut conn, &keys).await.unwrap().as_deref(), Some(a.model_version.as_str()));

    // Model B: another k, trained on the same rows.
    let rows = training_rows(&bus).await.unwrap();
    let b = train(rows, &TrainOptions { k: KChoice::Fixed(a.k + 1), ..Default::default() }).unwrap().artifact;
    assert_ne!(a.model_version, b.model_version, "the version identifies the content");
    let shutdown = Shutdown::default();
    score_stream(&model_bus, &b, &ModelMetrics::default(), "b", ConsumerOptions::default(), &shutdown, true)
        .await
        .unwrap();
    // B is announced, has assigned nothing: the mart keeps showing A, whole.
    let state = switch_model(&mut conn, &keys).await.unwrap();
    assert_eq!((state.state.as_str(), state.assigned, state.needed), ("backfilling", 0, n));
    let profiles = current_profiles(&mut conn, &keys).await.unwrap();
    assert_eq!(profiles.iter().map(|p| p.count).sum::<u64>(), n);
    assert!(profiles.iter().all(|p| p.model_version == a.model_version));

    assert_eq!(backfill(&model_bus, &b, &ModelMetrics::default()).await.unwrap(), n, "B re-scores every product");
    let report = service::drain(&mart_bus, &config(), &MartMetrics::default()).await.unwrap();
    assert_eq!(report.model_version, b.model_version, "the mart switched once B caught up");
    let state = MartState::read(&bus).await;
    assert_eq!(state.assignments.len() as u64, n);
    assert!(state.assignments.values().all(|p| p.model_version == b.model_version), "every product assigned by B");
    assert_eq!(report.profiles.iter().map(|p| p.count).sum::<u64>(), n);
    assert!(report.profiles.len() <= b.k && report.profiles.iter().all(|p| p.model_version == b.model_version));
    let models: Vec<String> =
        redis::cmd("ZRANGE").arg(keys.models()).arg(0).arg(-1).query_async(&mut conn).await.unwrap();
    assert_eq!(models, std::slice::from_ref(&b.model_version));
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}{}*", keys.mart_model_prefix(), a.model_version))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(left.is_empty(), "nothing of A is left: {left:?}");
    assert_profiles_match_rebuild(&bus).await;

    // A late prediction of A (a pod still draining) is ignored.
    let code = state.assignments.keys().next().unwrap().clone();
    let row = &state.products[&code];
    let late: Prediction = a.prediction(&code, &row.x, &row.version);
    let _: String = redis::cmd("XADD")
        .arg(keys.predictions_stream())
        .arg("*")
        .arg(PAYLOAD_FIELD)
        .arg(serde_json::to_string(&late).unwrap())
        .query_async(&mut conn)
        .await
        .unwrap();
    service::drain(&bus, &config(), &MartMetrics::default()).await.unwrap();
    assert_eq!(MartState::read(&bus).await.assignments[&code].model_version, b.model_version);
    let retired: Option<u64> =
        redis::cmd("HGET").arg(keys.mart_ignored()).arg("retired_model").query_async(&mut conn).await.unwrap();
    assert_eq!(retired, Some(1));
    assert_profiles_match_rebuild(&bus).await;
}
