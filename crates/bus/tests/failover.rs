//! Redis failover under the source's writes: a primary, two replicas and
//! three Sentinels as real processes. The writer finds the primary through
//! the Sentinels, each acknowledged write is on a replica (`WAIT 1`), and a
//! failed write is retried as a client would (the load is idempotent). The
//! primary is SIGKILLed five times during the load; afterwards every record
//! acknowledged is in the raw stream exactly once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lab8_bus::ingest::{add_new_products, VersionedProduct};
use lab8_bus::maintenance::scan_hash;
use lab8_bus::testing::{RedisOptions, ReplicatedRedis};
use lab8_bus::Bus;
use lab8_protocol::acl::Role;

const PREFIX: &str = "fo:";
const FAILOVERS: usize = 5;

/// What the writer saw: when each record was acknowledged, and the failures.
#[derive(Default)]
struct Writes {
    acknowledged: Vec<(u64, Instant)>,
    failures: u64,
    moves: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_record_survives_five_failovers_exactly_once() {
    let mut redis = ReplicatedRedis::start(
        2,
        RedisOptions {
            password: Some("failover-admin".into()),
            users_prefix: Some(PREFIX.into()),
            ..Default::default()
        },
    );
    // The source's user, waiting for one replica before it answers.
    let mut args = redis.args_as(PREFIX, Role::Source);
    args.wait_replicas = 1;
    args.wait_timeout_ms = 500;
    let bus = Bus::connect(&args).await.expect("the primary, found through the Sentinels");

    let writes = Arc::new(Mutex::new(Writes::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn({
        let (bus, writes, stop) = (bus.clone(), writes.clone(), stop.clone());
        async move {
            let mut next = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let product = VersionedProduct {
                    code: format!("c{next}"),
                    version: "1".into(),
                    payload: format!(r#"{{"code":"c{next}"}}"#),
                };
                let primary = bus.primary();
                match add_new_products(&mut bus.conn(), bus.keys(), &[product], bus.replica_wait()).await {
                    Ok(_) => {
                        let mut w = writes.lock().unwrap();
                        w.acknowledged.push((next, Instant::now()));
                        if w.moves.last() != Some(&primary) {
                            w.moves.push(primary);
                        }
                        next += 1;
                    }
                    // Retried, as the source's clients retry a 503.
                    Err(_) => {
                        writes.lock().unwrap().failures += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });

    let acknowledged = || writes.lock().unwrap().acknowledged.len();
    let mut outages = Vec::new();
    for round in 0..FAILOVERS {
        // Some load first, then the primary dies with writes in flight.
        let before = acknowledged();
        let deadline = Instant::now() + Duration::from_secs(60);
        while acknowledged() < before + 200 {
            assert!(Instant::now() < deadline, "round {round}: the writer made no progress");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let killed_at = Instant::now();
        let killed = tokio::task::block_in_place(|| redis.kill_primary());
        let promoted = tokio::task::block_in_place(|| redis.wait_for_failover(killed, Duration::from_secs(30)));
        // The outage: the longest wait between two acknowledgments around the
        // kill (a write in flight may still be answered just after it).
        loop {
            let after = writes.lock().unwrap().acknowledged.iter().filter(|(_, at)| *at > killed_at).count();
            if after >= 50 {
                break;
            }
            assert!(killed_at.elapsed() < Duration::from_secs(60), "round {round}: writes never resumed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let outage = {
            let w = writes.lock().unwrap();
            let around: Vec<Instant> = w
                .acknowledged
                .iter()
                .map(|(_, at)| *at)
                .filter(|at| *at + Duration::from_secs(1) > killed_at)
                .collect();
            around.windows(2).map(|pair| pair[1] - pair[0]).max().expect("acknowledgments around the kill")
        };
        println!(
            "failover {}: node {killed} killed, node {promoted} promoted, writes stopped for {outage:?}",
            round + 1
        );
        outages.push(outage);
        tokio::task::block_in_place(|| redis.bring_back(killed, Duration::from_secs(30)));
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();

    let writes = std::mem::take(&mut *writes.lock().unwrap());
    let admin = Bus::connect(&redis.args(PREFIX)).await.unwrap();
    let mut conn = admin.conn();
    let raw: Vec<(String, Vec<(String, String)>)> =
        redis::cmd("XRANGE").arg(admin.keys().raw_stream()).arg("-").arg("+").query_async(&mut conn).await.unwrap();
    let mut in_stream = std::collections::BTreeMap::<String, usize>::new();
    for (_, fields) in &raw {
        let payload = &fields.iter().find(|(f, _)| f == lab8_protocol::keys::PAYLOAD_FIELD).unwrap().1;
        let code = serde_json::from_str::<serde_json::Value>(payload).unwrap()["code"].as_str().unwrap().to_string();
        *in_stream.entry(code).or_default() += 1;
    }
    let missing: Vec<u64> =
        writes.acknowledged.iter().map(|(i, _)| *i).filter(|i| !in_stream.contains_key(&format!("c{i}"))).collect();
    let twice: Vec<&String> = in_stream.iter().filter(|(_, n)| **n > 1).map(|(c, _)| c).collect();
    let seen = scan_hash(&mut conn, &admin.keys().seen_codes()).await.unwrap();
    println!(
        "{} records acknowledged, {} in the raw stream, {} write attempts failed and were retried; \
         outages {outages:?}; the writer followed the primary {:?}",
        writes.acknowledged.len(),
        in_stream.len(),
        writes.failures,
        writes.moves
    );
    assert!(missing.is_empty(), "acknowledged records lost in a failover: {missing:?}");
    assert!(twice.is_empty(), "records in the raw stream twice: {twice:?}");
    assert_eq!(seen.len(), in_stream.len(), "the seen set and the raw stream agree");
    assert!(writes.moves.len() > FAILOVERS, "the writer moved to each new primary: {:?}", writes.moves);
}

/// A write the replicas do not confirm in time is an error, not a success:
/// asking for more replicas than there are fails every write, after the
/// timeout; the write itself is on the primary, and sending it again adds
/// nothing (the client's retry is safe).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_short_of_its_replicas_fails_and_its_retry_adds_nothing() {
    let redis = ReplicatedRedis::start(1, RedisOptions { password: Some("wait-admin".into()), ..Default::default() });
    let mut args = redis.args(PREFIX);
    args.wait_replicas = 2;
    args.wait_timeout_ms = 200;
    let bus = Bus::connect(&args).await.unwrap();
    let product = VersionedProduct { code: "w1".into(), version: "1".into(), payload: r#"{"code":"w1"}"#.into() };
    let started = Instant::now();
    let err = add_new_products(&mut bus.conn(), bus.keys(), std::slice::from_ref(&product), bus.replica_wait())
        .await
        .expect_err("one replica cannot confirm for two");
    assert!(
        matches!(err, lab8_bus::BusError::NotReplicated { wanted: 2, got: 1, .. })
            && started.elapsed() >= Duration::from_millis(200),
        "{err} after {:?}",
        started.elapsed()
    );
    assert!(err.to_string().contains("REDIS_WAIT_REPLICAS"), "{err}");
    // One replica is what there is: the retry finds the record sent and adds nothing.
    let added = add_new_products(
        &mut bus.conn(),
        bus.keys(),
        &[product],
        lab8_bus::ReplicaWait { replicas: 1, timeout_ms: 200 },
    )
    .await
    .unwrap();
    assert_eq!((added.sent, added.unchanged), (0, 1));
}

/// A Sentinel naming a replica as the primary (restarted from an old
/// configuration, or cut off during a failover) does not hold a client on
/// that replica: outvoted when the others agree, passed over when it is the
/// only other voice and its node says it is a replica.
#[tokio::test]
async fn a_sentinel_naming_a_replica_is_outvoted_or_passed_over() {
    let mut redis =
        ReplicatedRedis::start(1, RedisOptions { password: Some("stale-admin".into()), ..Default::default() });
    let stale = redis.start_stale_sentinel(1);
    let primary = format!("127.0.0.1:{}", redis.nodes[0].port());
    let mut args = redis.args("stale:");
    args.connect_timeout_secs = 5;

    // First in the list, against three that name the primary.
    args.sentinels.insert(0, stale.clone());
    let bus = Bus::connect(&args).await.expect("the bus finds the primary the other three Sentinels name");
    assert_eq!(bus.primary(), primary);

    // One against one: the tie goes in list order, so the replica is tried first.
    args.sentinels = vec![stale, redis.sentinel_addresses()[0].clone()];
    let bus = Bus::connect(&args).await.expect("the bus passes over the replica to the primary");
    assert_eq!(bus.primary(), primary);
}
