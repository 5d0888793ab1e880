//! The whole pipeline across Redis failovers: a primary, two replicas and
//! three Sentinels; the source loads the sample as its own ACL user, waiting
//! for a replica per chunk and retrying a failed load as a client would; the
//! mart and the model run as processes, each as its own user, finding the
//! primary through the Sentinels. The primary is SIGKILLed twice while the
//! pipeline has work in flight. Afterwards the mart holds every product of
//! the sample once, every raw record is accounted for once, and the
//! incremental profiles equal a rebuild from the tables.

use std::time::{Duration, Instant};

use lab8_bus::testing::{RedisOptions, ReplicatedRedis};
use lab8_bus::Bus;
use lab8_protocol::acl::Role;
use lab8_source::input::ReadOptions;
use lab8_source::Loader;
use lab8_system_tests::harness::{
    assert_every_raw_record_accounted_once, assert_profiles_match_rebuild, backlogs, settle_within, MartState, Services,
};
use lab8_system_tests::{repeated_sample, root};

const PREFIX: &str = "pf:";
const FAILOVERS: usize = 2;
/// The sample six times over (prefixed codes): work for both failovers.
const REPEAT: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_loses_nothing_and_counts_nothing_twice_across_failovers() {
    let mut redis = ReplicatedRedis::start(
        2,
        RedisOptions {
            password: Some("pipeline-admin".into()),
            users_prefix: Some(PREFIX.into()),
            ..Default::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("model");
    lab8_model::artifact::unpack(&root().join(lab8_model::DEFAULT_ARTIFACT_PATH), &model_dir).unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let services = Services {
        redis_url: "redis://127.0.0.1:1".into(), // unused: the Sentinels name the primary
        password_file: None,
        users_dir: Some(redis.nodes[0].dir().to_path_buf()),
        sentinels: redis.sentinel_addresses(),
        prefix: PREFIX.into(),
        model_dir,
        logs: logs.clone(),
    };
    let mut mart = services.spawn("mart", 0);
    let mut model = services.spawn("model", 0);

    // The source: the sample, a replica confirming each chunk; a failed
    // load is loaded again whole (idempotent), as a client retries.
    let mut source_args = redis.args_as(PREFIX, Role::Source);
    source_args.wait_replicas = 1;
    let source_bus = Bus::connect(&source_args).await.unwrap();
    let input = repeated_sample(dir.path(), REPEAT);
    let loader = tokio::spawn(async move {
        let options = ReadOptions::default();
        let mut attempts = 0;
        loop {
            attempts += 1;
            // Small chunks: many acknowledged writes for a kill to fall between.
            match Loader::new(&source_bus).load_files(std::slice::from_ref(&input), &options, 100, false).await {
                Ok(_) => return attempts,
                Err(e) => {
                    println!("load attempt {attempts} failed ({e}); loading again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });

    let admin = Bus::connect(&redis.args(PREFIX)).await.unwrap();
    for round in 0..FAILOVERS {
        // Wait for work in flight: entries not yet through the pipeline.
        let deadline = Instant::now() + Duration::from_secs(60);
        while backlogs(&admin).await.iter().sum::<u64>() == 0 {
            assert!(Instant::now() < deadline, "round {round}: no work in flight to fail over under");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let killed_at = Instant::now();
        let killed = tokio::task::block_in_place(|| redis.kill_primary());
        let promoted = tokio::task::block_in_place(|| redis.wait_for_failover(killed, Duration::from_secs(30)));
        println!(
            "failover {}: node {killed} killed, node {promoted} primary after {:?}",
            round + 1,
            killed_at.elapsed()
        );
        tokio::task::block_in_place(|| redis.bring_back(killed, Duration::from_secs(30)));
        println!("  node {killed} a replica in sync {:?} after the kill", killed_at.elapsed());
    }
    let attempts = tokio::time::timeout(Duration::from_secs(180), loader)
        .await
        .expect("the load finished (a lasting error would retry forever)")
        .unwrap();

    if let Err(state) = settle_within(&admin, Duration::from_secs(180)).await {
        panic!("the mart did not settle after the failovers: {state}; logs in {}", dir.keep().join("logs").display());
    }
    let state = MartState::read(&admin).await;
    let raw = assert_every_raw_record_accounted_once(&admin).await;
    let counted = assert_profiles_match_rebuild(&admin).await;
    mart.kill();
    model.kill();
    println!(
        "{FAILOVERS} failovers, each with work in flight; the sample loaded in {attempts} attempt(s): \
         {raw} raw records, {} products, {counted} counted by the profiles",
        state.products.len()
    );
    assert_eq!(state.products.len(), REPEAT * 12_945, "every product of the input, once");
    assert_eq!(state.assignments.len(), state.products.len(), "every product has a cluster");
}
