//! The whole flow on the bundled real OpenFoodFacts sample against a real
//! redis-server: source → mart → model (train, score) → mart, with
//! reconciliation: every raw record ends in the mart with a cluster or in the
//! dead-letter stream with a reason, none lost, none counted twice.

use std::collections::{BTreeMap, HashSet};

use lab8_bus::inspect::{dead_letters, read_stream};
use lab8_bus::maintenance::scan_hash;
use lab8_bus::testing::RedisServer;
use lab8_bus::ConsumerOptions;
use lab8_mart::{service, MartConfig, MartMetrics};
use lab8_model::service::{score_stream, training_rows, ModelMetrics};
use lab8_model::train::{train, TrainOptions};
use lab8_model::{ModelArtifact, DEFAULT_ARTIFACT_PATH};
use lab8_protocol::messages::{ClusterProfile, Prediction, ProductRow, RawProduct};
use lab8_service::Shutdown;
use lab8_source::input::ReadOptions;
use lab8_source::Loader;
use lab8_system_tests::harness::{assert_every_raw_record_accounted_once, assert_profiles_match_rebuild};
use lab8_system_tests::{root, sample_files};

fn config() -> MartConfig {
    MartConfig {
        consumer: "test".into(),
        consumer_options: ConsumerOptions::default(),
        profile_interval: std::time::Duration::from_secs(1),
        trim_acknowledged: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundled_sample_reconciles_end_to_end() {
    let redis = RedisServer::start();
    let bus = redis.bus("e2e:").await;
    let keys = bus.keys().clone();
    let mut conn = bus.conn();

    // Source: 17,072 rows in five files, 16,014 unique codes. A code listed
    // in two category files differs by its category: the later record is a
    // newer version (by arrival), sent too.
    let files = sample_files();
    let options = ReadOptions { category_from_file_name: true, ..Default::default() };
    let mut loader = Loader::new(&bus);
    let first = loader.load_files(&files, &options, 1000, false).await.unwrap();
    assert_eq!(first.read, 17_072);
    assert_eq!(first.sent, 17_072);
    assert_eq!(first.rejected_total(), 0);
    // Loading again sends nothing for the 14,958 codes with one record. The
    // 1,057 codes listed in two files, with no `last_modified_t` to order
    // them, are sent again (each record differs from the last one sent);
    // the last still wins, so the mart ends the same.
    let again = loader.load_files(&files, &options, 1000, false).await.unwrap();
    assert_eq!((again.sent, again.duplicates, again.stale), (2 * 1_057, 14_958, 0));

    // Mart: clean.
    let ops = MartMetrics::default();
    let cleaned = service::drain(&bus, &config(), &ops).await.unwrap();
    assert_eq!(cleaned.raw_entries, 17_072 + 2 * 1_057);
    assert_eq!(cleaned.prediction_entries, 0);

    // Model: train on the feature rows, score them.
    let rows = training_rows(&bus).await.unwrap();
    // The defaults, as `lab8-model train` uses them: the result must be the
    // artifact committed in dist/ (training is deterministic).
    let trained = train(rows.clone(), &TrainOptions::default()).unwrap();
    let model = trained.artifact;
    let committed = root().join(DEFAULT_ARTIFACT_PATH);
    assert_eq!(
        ModelArtifact::read_zip(&committed).unwrap(),
        model,
        "dist/model-lab5-1.0.0.zip is not what training on the sample gives: run `make demo` and commit it"
    );
    let scored = score_stream(
        &bus,
        &model,
        &ModelMetrics::default(),
        "test",
        ConsumerOptions::default(),
        &Shutdown::default(),
        true,
    )
    .await
    .unwrap();
    let features = read_stream(&mut conn, &keys.features_stream()).await.unwrap();
    assert_eq!(scored as usize, features.len(), "every version the mart accepted was scored");

    // Mart: materialise.
    let report = service::drain(&bus, &config(), &ops).await.unwrap();
    assert_eq!(report.prediction_entries, scored);

    // Reconciliation.
    let raw = read_stream(&mut conn, &keys.raw_stream()).await.unwrap();
    let products: Vec<ProductRow> = scan_hash(&mut conn, &keys.mart_products())
        .await
        .unwrap()
        .into_iter()
        .map(|(_, v)| serde_json::from_str(&v).unwrap())
        .collect();
    let assignments: BTreeMap<String, Prediction> = scan_hash(&mut conn, &keys.mart_assignments())
        .await
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, serde_json::from_str(&v).unwrap()))
        .collect();
    let letters = dead_letters(&bus).await.unwrap();
    let mart_letters: Vec<_> = letters.iter().filter(|l| l["stage"] == "mart").collect();
    assert_eq!(raw.len(), 17_072 + 2 * 1_057);
    let letter_entries: HashSet<&str> = mart_letters.iter().map(|l| l["entry"].as_str()).collect();
    assert_eq!(letter_entries.len(), mart_letters.len(), "no record rejected twice");
    let raw_ids: HashSet<&str> = raw.iter().map(|e| e.id.as_str()).collect();
    assert!(letter_entries.iter().all(|id| raw_ids.contains(id)));
    assert!(mart_letters.iter().all(|l| !l["reason"].is_empty()));
    // Every raw record is a dead letter, or the version of its code the
    // product table holds, or replaced by a later accepted record of its code.
    let mut last_accepted: BTreeMap<String, String> = BTreeMap::new();
    for entry in &raw {
        if letter_entries.contains(entry.id.as_str()) {
            continue;
        }
        let product: RawProduct = serde_json::from_slice(entry.payload.as_deref().unwrap()).unwrap();
        last_accepted.insert(product.code.clone(), product.version());
    }
    assert_eq!(last_accepted.len(), products.len(), "every code with an accepted record is in the mart");
    assert!(
        products.iter().all(|p| last_accepted.get(&p.code) == Some(&p.version)),
        "each product is the last accepted version of its code"
    );
    assert_eq!(rows.len(), products.len());
    let product_codes: HashSet<&str> = products.iter().map(|p| p.code.as_str()).collect();
    let rejected_codes: HashSet<&str> = mart_letters.iter().map(|l| l["code"].as_str()).collect();
    assert!(
        rejected_codes.iter().all(|c| !product_codes.contains(c) || last_accepted.contains_key(*c)),
        "a rejected code is in the mart only through another, accepted record"
    );
    assert_eq!(assignments.len(), products.len(), "every product has a cluster");
    assert!(products.iter().all(|p| assignments[&p.code].cluster < model.k as u32));

    let profiles: Vec<ClusterProfile> = scan_hash(&mut conn, &keys.mart_clusters())
        .await
        .unwrap()
        .into_iter()
        .map(|(_, v)| serde_json::from_str(&v).unwrap())
        .collect();
    assert_eq!(profiles.len(), model.k);
    assert_eq!(
        profiles.iter().map(|p| p.count).sum::<u64>() as usize,
        products.len(),
        "cluster counts add up to the mart"
    );
    let mut sizes = vec![0u64; model.k];
    trained.labels.iter().for_each(|&l| sizes[l] += 1);
    let mut profile_sizes: Vec<u64> = profiles.iter().map(|p| p.count).collect();
    profile_sizes.sort();
    sizes.sort();
    assert_eq!(profile_sizes, sizes, "the mart's clusters are the model's");

    assert_eq!(assert_every_raw_record_accounted_once(&bus).await, raw.len() as u64);
    assert_profiles_match_rebuild(&bus).await;

    // Running the mart and the model again changes nothing.
    let idle = service::drain(&bus, &config(), &ops).await.unwrap();
    assert_eq!((idle.raw_entries, idle.prediction_entries), (0, 0));
    assert_eq!(idle.profiles, report.profiles);

    let mut by_reason: BTreeMap<String, usize> = BTreeMap::new();
    for l in &mart_letters {
        *by_reason.entry(l["reason"].clone()).or_default() += 1;
    }
    println!(
        "raw {} valid {} rejected {} k {} sizes {:?}\nrejected by reason {by_reason:?}",
        raw.len(),
        products.len(),
        mart_letters.len(),
        model.k,
        sizes
    );
}
