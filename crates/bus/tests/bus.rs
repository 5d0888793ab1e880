//! The bus against a real redis-server.

use std::time::Duration;

use lab8_bus::ingest::{add_new_products, VersionedProduct};
use lab8_bus::inspect::{backlog, dead_letters, entries_added, read_stream};
use lab8_bus::maintenance::trim_acknowledged;
use lab8_bus::testing::{RedisOptions, RedisServer};
use lab8_bus::ReplicaWait;
use lab8_bus::{
    commit, consume, Bus, BusError, CommitScript, CommitTarget, ConsumerOptions, Effects, Entry, TableWrite,
};
use lab8_protocol::messages::Stage;
use lab8_protocol::version::{compare, version_of, VersionOrder, VERSION_CASES};
use lab8_protocol::{Keys, Reason};
use lab8_service::Shutdown;

/// A target writing everything: output, table, dead letters.
fn target(keys: &Keys) -> CommitTarget {
    CommitTarget {
        stream: keys.raw_stream(),
        group: "g".into(),
        stage: Stage::Mart,
        dead_letters: keys.dead_letter_stream(),
        rejections: keys.rejections(Stage::Mart),
        output: Some(keys.features_stream()),
        table: Some(keys.mart_products()),
        context: String::new(),
        script: CommitScript::standard(),
    }
}

async fn xlen(bus: &Bus, key: &str) -> u64 {
    redis::cmd("XLEN").arg(key).query_async(&mut bus.conn()).await.unwrap()
}

#[tokio::test]
async fn products_are_added_once_per_code() {
    let redis = RedisServer::start();
    let bus = redis.bus("t:").await;
    let mut conn = bus.conn();
    // 5000 records of 3000 codes; a code's repeats carry the same content.
    let items = products((0..5000).map(|i| (format!("{}", i % 3000), format!("{{\"code\":\"{}\"}}", i % 3000))));
    let first = add_new_products(&mut conn, bus.keys(), &items, ReplicaWait::default()).await.unwrap();
    assert_eq!((first.sent, first.unchanged, first.stale), (3000, 2000, 0));
    let again = add_new_products(&mut conn, bus.keys(), &items, ReplicaWait::default()).await.unwrap();
    assert_eq!((again.sent, again.unchanged), (0, 5000));
    assert_eq!(xlen(&bus, &bus.keys().raw_stream()).await, 3000);
}

/// The script's version rule is the protocol's: every shared case, in Redis.
#[tokio::test]
async fn newer_versions_are_sent_and_older_ones_ignored() {
    let redis = RedisServer::start();
    let bus = redis.bus("t:").await;
    let mut conn = bus.conn();
    for (i, (new, old, expected)) in VERSION_CASES.iter().enumerate() {
        let code = format!("c{i}");
        if let Some(old) = old {
            let sent = add_new_products(&mut conn, bus.keys(), &[versioned(&code, old)], ReplicaWait::default())
                .await
                .unwrap();
            assert_eq!(sent.sent, 1);
        }
        let added =
            add_new_products(&mut conn, bus.keys(), &[versioned(&code, new)], ReplicaWait::default()).await.unwrap();
        let got = match (added.sent, added.unchanged, added.stale) {
            (1, 0, 0) => VersionOrder::Newer,
            (0, 1, 0) => VersionOrder::Same,
            (0, 0, 1) => VersionOrder::Older,
            other => panic!("{other:?}"),
        };
        assert_eq!(got, *expected, "{new} against {old:?}");
        assert_eq!(compare(new, *old), *expected);
    }
}

fn versioned(code: &str, version: &str) -> VersionedProduct {
    VersionedProduct { code: code.into(), version: version.into(), payload: format!("{{\"code\":\"{code}\"}}") }
}

/// `(code, payload)` pairs as products versioned by their content.
fn products(items: impl Iterator<Item = (String, String)>) -> Vec<VersionedProduct> {
    items
        .map(|(code, payload)| VersionedProduct { version: version_of(None, payload.as_bytes()), code, payload })
        .collect()
}

#[tokio::test]
async fn a_commit_takes_effect_once_even_when_redelivered() {
    let redis = RedisServer::start();
    let bus = redis.bus("t:").await;
    let keys = bus.keys().clone();
    let mut conn = bus.conn();
    let items = products((0..10).map(|i| (i.to_string(), "{}".to_string())));
    add_new_products(&mut conn, &keys, &items, ReplicaWait::default()).await.unwrap();
    let mut consumer = bus.consumer(keys.raw_stream(), "g", "c1", ConsumerOptions::default()).await.unwrap();
    let batch = consumer.next_batch(false).await.unwrap();
    assert_eq!(batch.len(), 10);
    let outcomes: Vec<Effects> = batch
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let code = i.to_string();
            if i % 2 == 0 {
                Effects::accepted(&e.id, &code).with_table(TableWrite::Insert("v".into())).with_output("{}".into())
            } else {
                Effects::rejected(&e.id, &code, Reason::MacroSumExceeds100, b"payload")
            }
        })
        .collect();
    let first = commit(&mut conn, &target(&keys), &outcomes).await.unwrap();
    assert_eq!((first.applied, first.stopped), (10, 0));
    let again = commit(&mut conn, &target(&keys), &outcomes).await.unwrap();
    assert_eq!(again.applied, 0, "a redelivered batch must not apply twice");
    assert_eq!(xlen(&bus, &keys.features_stream()).await, 5);
    assert_eq!(xlen(&bus, &keys.dead_letter_stream()).await, 5);
    let count: u64 = redis::cmd("HGET")
        .arg(keys.rejections(Stage::Mart))
        .arg("macro_sum_exceeds_100")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(count, 5);
    let letters = dead_letters(&bus).await.unwrap();
    assert_eq!(letters.len(), 5);
    assert!(letters
        .iter()
        .all(|l| l["stage"] == "mart" && l["payload"] == "payload" && l["reason"] == "macro_sum_exceeds_100"));
    assert_eq!(backlog(&bus, &keys.raw_stream(), "g").await.unwrap(), 0);
}

#[tokio::test]
async fn an_insert_of_a_known_code_is_a_duplicate_and_sends_nothing() {
    let redis = RedisServer::start();
    let bus = redis.bus("t:").await;
    let keys = bus.keys().clone();
    let mut conn = bus.conn();
    for i in 0..3 {
        let _: String = redis::cmd("XADD")
            .arg(keys.raw_stream())
            .arg("*")
            .arg("p")
            .arg(i.to_string())
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let mut consumer = bus.consumer(keys.raw_stream(), "g", "c1", ConsumerOptions::default()).await.unwrap();
    let batch = consumer.next_batch(false).await.unwrap();
    let outcomes: Vec<_> = batch
        .iter()
        .map(|e| {
            Effects::accepted(&e.id, "same").with_table(TableWrite::Insert(e.id.clone())).with_output(e.id.clone())
        })
        .collect();
    let committed = commit(&mut conn, &target(&keys), &outcomes).await.unwrap();
    assert_eq!((committed.applied, committed.stopped), (3, 2));
    let kept: String = redis::cmd("HGET").arg(keys.mart_products()).arg("same").query_async(&mut conn).await.unwrap();
    assert_eq!(kept, batch[0].id, "the first record of a code wins");
    let sent = read_stream(&mut conn, &keys.features_stream()).await.unwrap();
    assert_eq!(sent.len(), 1, "a duplicate sends no output");
    let letters = dead_letters(&bus).await.unwrap();
    let reasons: Vec<&str> = letters.iter().map(|l| l["reason"].as_str()).collect();
    assert_eq!(reasons, ["duplicate_code", "duplicate_code"]);
    assert_eq!(letters[0]["entry"], batch[1].id);
    // Replace overwrites.
    let replace = [Effects::accepted(&batch[2].id, "other").with_table(TableWrite::Replace("x".into()))];
    assert_eq!(commit(&mut conn, &target(&keys), &replace).await.unwrap().applied, 0, "already acknowledged");
}

#[tokio::test]
async fn pending_entries_are_read_again_and_idle_ones_reclaimed() {
    let redis = RedisServer::start();
    let bus = redis.bus("t:").await;
    let keys = bus.keys().clone();
    let mut conn = bus.conn();
    let items = products((0..4).map(|i| (i.to_string(), "{}".to_string())));
    add_new_products(&mut conn, &keys, &items, ReplicaWait::default()).await.unwrap();
    let options =
        ConsumerOptions { batch: 10, block: Duration::from_millis(100), claim_idle: Duration::from_millis(200) };
    // c1 reads and "crashes" without acknowledging.
    let mut c1 = bus.consumer(keys.raw_stream(), "g", "c1", options.clone()).await.unwrap();
    assert_eq!(c1.next_batch(false).await.unwrap().len(), 4);
    // Restarted under the same name, it reads its own pending entries first.
    let mut c1_again = bus.consumer(keys.raw_stream(), "g", "c1", options.clone()).await.unwrap();
    assert_eq!(c1_again.next_batch(false).await.unwrap().len(), 4);
    // Another replica takes them over once they have been idle long enough.
    let mut c2 = bus.consumer(keys.raw_stream(), "g", "c2", options).await.unwrap();
    assert!(c2.next_batch(false).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let claimed = c2.next_batch(false).await.unwrap();
    assert_eq!(claimed.len(), 4);
    assert!(claimed.iter().all(|e| e.payload.as_deref() == Some(b"{}".as_slice())));
}

#[tokio::test]
async fn consume_drains_and_retries_a_failing_batch() {
    let redis = RedisServer::start();
    let bus = redis.bus("t:").await;
    let keys = bus.keys().clone();
    let items = products((0..25).map(|i| (i.to_string(), "{}".to_string())));
    add_new_products(&mut bus.conn(), &keys, &items, ReplicaWait::default()).await.unwrap();
    let options = ConsumerOptions { batch: 10, ..Default::default() };
    let mut consumer = bus.consumer(keys.raw_stream(), "g", "c", options).await.unwrap();
    let mut seen = Vec::new();
    let mut failures = 0;
    let handled = consume(&mut consumer, &Shutdown::default(), true, async |batch: &[Entry]| {
        if failures < 2 {
            failures += 1;
            return Err("transient");
        }
        seen.extend(batch.iter().map(|e| e.id.clone()));
        Ok(())
    })
    .await;
    assert_eq!(handled, 25);
    assert_eq!(seen.len(), 25, "the failed batch was retried, not skipped");
    let all = read_stream(&mut bus.conn(), &keys.raw_stream()).await.unwrap();
    assert_eq!(all.len(), 25);
}

#[tokio::test]
async fn a_wrong_password_fails_fast_without_showing_it() {
    let redis = RedisServer::start_with(RedisOptions { password: Some("s3cret-pw".into()), ..Default::default() });
    assert!(Bus::connect(&redis.args("t:")).await.is_ok());
    let mut wrong = redis.args("t:");
    std::fs::write(wrong.password_file.as_ref().unwrap(), "not-it").unwrap();
    let err = Bus::connect(&wrong).await.map(|_| ()).expect_err("wrong password refused");
    assert!(matches!(err, BusError::Auth { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("REDIS_PASSWORD") && !text.contains("not-it") && !text.contains("s3cret"), "{text}");
    wrong.password_file = None;
    let err = Bus::connect(&wrong).await.map(|_| ()).expect_err("no password refused");
    assert!(matches!(err, BusError::Auth { .. }), "{err}");
}

#[tokio::test]
async fn an_unreachable_redis_fails_after_the_timeout_naming_the_setting() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut args = lab8_bus::RedisArgs::for_url(format!("redis://127.0.0.1:{port}"), "t:");
    args.connect_timeout_secs = 1;
    let err = Bus::connect(&args).await.map(|_| ()).expect_err("unreachable");
    assert!(err.to_string().starts_with("REDIS_URL"), "{err}");
}

#[tokio::test]
async fn trimming_keeps_every_unacknowledged_entry() {
    let redis = RedisServer::start();
    let bus = redis.bus("t:").await;
    let keys = bus.keys().clone();
    let mut conn = bus.conn();
    let stream = keys.raw_stream();
    assert_eq!(trim_acknowledged(&mut conn, &stream, &["g"]).await.unwrap(), 0, "no stream yet");
    let items = products((0..100).map(|i| (i.to_string(), "{}".to_string())));
    add_new_products(&mut conn, &keys, &items, ReplicaWait::default()).await.unwrap();
    let options = ConsumerOptions { batch: 30, ..Default::default() };
    let mut consumer = bus.consumer(stream.clone(), "g", "c", options).await.unwrap();
    // Two groups: trimming waits for the slower one.
    bus.ensure_group(&stream, "slow").await.unwrap();
    let first = consumer.next_batch(false).await.unwrap();
    let second = consumer.next_batch(false).await.unwrap();
    let acked: Vec<Effects> = first.iter().map(|e| Effects::accepted(&e.id, &e.id)).collect();
    commit(&mut conn, &target(&keys), &acked).await.unwrap();
    assert_eq!(
        trim_acknowledged(&mut conn, &stream, &["g", "slow"]).await.unwrap(),
        0,
        "the slow group has read nothing"
    );
    assert_eq!(
        trim_acknowledged(&mut conn, &stream, &["g", "missing"]).await.unwrap(),
        0,
        "a missing group blocks trimming"
    );
    // Only "g": the 30 acknowledged go, the 30 pending and the 40 undelivered stay.
    assert_eq!(trim_acknowledged(&mut conn, &stream, &["g"]).await.unwrap(), 30);
    assert_eq!(xlen(&bus, &stream).await, 70);
    let remaining = read_stream(&mut conn, &stream).await.unwrap();
    assert_eq!(remaining[0].id, second[0].id);
    assert_eq!(entries_added(&mut conn, &stream).await.unwrap(), 100, "entries-added survives trimming");
}

/// SIGTERM while a blocking read waits: entries Redis hands to that read are
/// pending at this consumer, so the read must finish and its batch be handled
/// and acknowledged before the loop exits — not be dropped and left pending
/// until another replica reclaims them.
#[tokio::test]
async fn shutdown_during_a_blocking_read_finishes_the_batch_it_was_given() {
    let redis = RedisServer::start();
    let bus = redis.bus("t:").await;
    let keys = bus.keys().clone();
    let options = ConsumerOptions { batch: 100, block: Duration::from_millis(1500), ..Default::default() };
    let mut consumer = bus.consumer(keys.raw_stream(), "g", "c", options).await.unwrap();
    let shutdown = Shutdown::default();
    let writer = {
        let (bus, keys, shutdown) = (bus.clone(), keys.clone(), shutdown.clone());
        tokio::spawn(async move {
            // The loop is blocked in XREADGROUP on the empty stream by now.
            tokio::time::sleep(Duration::from_millis(300)).await;
            shutdown.trigger();
            tokio::time::sleep(Duration::from_millis(100)).await;
            let items = products((0..5).map(|i| (i.to_string(), "{}".to_string())));
            add_new_products(&mut bus.conn(), &keys, &items, ReplicaWait::default()).await.unwrap();
        })
    };
    let mut handled_ids = Vec::new();
    let handled = consume(&mut consumer, &shutdown, false, async |batch: &[Entry]| {
        let effects: Vec<Effects> = batch.iter().map(|e| Effects::accepted(&e.id, &e.id)).collect();
        commit(&mut bus.conn(), &target(&keys), &effects).await.map(|_| handled_ids.extend(effects))
    })
    .await;
    writer.await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pending: (u64, Option<String>, Option<String>, redis::Value) =
        redis::cmd("XPENDING").arg(keys.raw_stream()).arg("g").query_async(&mut bus.conn()).await.unwrap();
    assert_eq!(xlen(&bus, &keys.raw_stream()).await, 5, "the entries were written");
    assert_eq!(pending.0, 0, "nothing left pending at the stopped consumer");
    assert_eq!(handled, 5, "the batch in hand was handled before exiting");
    drop(consumer);
}
