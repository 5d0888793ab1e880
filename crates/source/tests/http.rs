//! The ingest API over a real socket and a real redis-server: batches and
//! single products go in once per code; oversized and malformed bodies get a
//! 4xx and the server keeps serving.

use std::time::Duration;

use lab8_bus::inspect::entries_added;
use lab8_bus::testing::RedisServer;
use lab8_bus::Bus;
use lab8_service::auth::testing::{assert_bearer_required, bearer, TEST_TOKEN};
use lab8_service::auth::{ApiAuth, Token};
use lab8_service::{client, serve_http, Ops, Shutdown};
use lab8_source::http::router;
use lab8_source::Loader;

const PRODUCT: &str = r#"{"code":"h1","product_name":"Bread","energy_100g":1000,"fat_100g":3}"#;

fn token() -> ApiAuth {
    ApiAuth::Token(Token::new(TEST_TOKEN).unwrap())
}

async fn raw_count(bus: &Bus) -> u64 {
    entries_added(&mut bus.conn(), &bus.keys().raw_stream()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_over_http_and_refuse_bad_bodies() {
    let redis = RedisServer::start();
    let bus = redis.bus("h:").await;
    let ops = Ops::default();
    let shutdown = Shutdown::default();
    let app = router(Loader::new(&bus), ops.clone(), 64 * 1024, token());
    let (addr, server) = serve_http("127.0.0.1:0".parse().unwrap(), app, shutdown.clone()).await.unwrap();
    let call = |method: &'static str, path: &'static str, body: Vec<u8>| async move {
        let (name, value) = bearer();
        let url = format!("http://{addr}{path}");
        let response =
            client::request_with_headers(method, &url, &[(name, &value)], body, Duration::from_secs(10)).await;
        let response = response.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        Ok::<_, ()>((response.status, response.body))
    };

    let (status, body) = call("POST", "/products", PRODUCT.as_bytes().to_vec()).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""sent":1"#), "{body}");
    let batch = format!(r#"[{PRODUCT}, {{"code":"h2","product_name":"Jam"}}, {{"product_name":"no code"}}]"#);
    let (status, body) = call("POST", "/products", batch.into_bytes()).await.unwrap();
    assert_eq!(status, 200);
    assert!(body.contains(r#""sent":1,"duplicates":1"#) && body.contains("missing_code"), "{body}");
    assert_eq!(raw_count(&bus).await, 2);

    for (bad, expected) in [
        (b"{not json".to_vec(), 400),
        (b"42".to_vec(), 400),
        (vec![b' '; 100 * 1024], 413),
        (b"\xff\xfe".to_vec(), 400),
    ] {
        let (status, body) = call("POST", "/products", bad).await.unwrap();
        assert_eq!(status, expected, "{body}");
    }
    let (status, _) = call("GET", "/products", Vec::new()).await.unwrap();
    assert_eq!(status, 405);
    // Still serving, and nothing bad got in.
    let (status, body) = call("POST", "/products", br#"{"code":"h3"}"#.to_vec()).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(raw_count(&bus).await, 3);
    let (status, metrics) = call("GET", "/metrics", Vec::new()).await.unwrap();
    assert_eq!(status, 200);
    assert!(metrics.contains("lab8_source_records_total{outcome=\"sent\"} 3"), "{metrics}");
    shutdown.trigger();
    server.await.unwrap().unwrap();
}

/// A full Redis (maxmemory with `noeviction`, as in the cluster): the source
/// answers 503 and keeps serving; every record it acknowledged is in the raw
/// stream; once there is room, the same batch sent again goes in, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_redis_is_a_503_the_client_can_retry_and_nothing_acknowledged_is_lost() {
    let redis = RedisServer::start();
    let bus = redis.bus("full:").await;
    let mut conn = bus.conn();
    let shutdown = Shutdown::default();
    let app = router(Loader::new(&bus), Ops::default(), 4 * 1024 * 1024, ApiAuth::Open);
    let (addr, server) = serve_http("127.0.0.1:0".parse().unwrap(), app, shutdown.clone()).await.unwrap();
    let url = format!("http://{addr}/products");
    let batch = |n: usize| {
        let items: Vec<String> = (0..200)
            .map(|i| format!(r#"{{"code":"b{n}-{i}","product_name":"{}","fat_100g":3}}"#, "x".repeat(400)))
            .collect();
        format!("[{}]", items.join(",")).into_bytes()
    };
    let used: u64 = {
        let info: String = redis::cmd("INFO").arg("memory").query_async(&mut conn).await.unwrap();
        info.lines().find_map(|l| l.strip_prefix("used_memory:")).unwrap().trim().parse().unwrap()
    };
    let _: () =
        redis::cmd("CONFIG").arg("SET").arg("maxmemory-policy").arg("noeviction").query_async(&mut conn).await.unwrap();
    let _: () =
        redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(used + 2_000_000).query_async(&mut conn).await.unwrap();

    let mut acknowledged = 0u64;
    let mut refused = None;
    for n in 0..200 {
        let response = client::request("POST", &url, batch(n), Duration::from_secs(10)).await.unwrap();
        match response.status {
            200 => {
                acknowledged +=
                    serde_json::from_str::<serde_json::Value>(&response.body).unwrap()["sent"].as_u64().unwrap()
            }
            503 => {
                assert!(response.body.contains("retry"), "{}", response.body);
                refused = Some(n);
                break;
            }
            other => panic!("unexpected {other}: {}", response.body),
        }
    }
    let refused = refused.expect("Redis filled up and the source said so");
    assert!(acknowledged > 0, "some batches went in before Redis was full");
    assert_eq!(raw_count(&bus).await, acknowledged, "every acknowledged record is in the raw stream");
    // Still serving: health answers while Redis is full.
    let health = client::get(&format!("http://{addr}/healthz"), Duration::from_secs(5)).await.unwrap();
    assert_eq!(health.status, 200);
    // Room again: the refused batch is retried and goes in once.
    let _: () = redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(0).query_async(&mut conn).await.unwrap();
    let retried = client::request("POST", &url, batch(refused), Duration::from_secs(10)).await.unwrap();
    assert_eq!(retried.status, 200, "{}", retried.body);
    let again = client::request("POST", &url, batch(refused), Duration::from_secs(10)).await.unwrap();
    assert!(again.body.contains(r#""sent":0"#), "a retry adds nothing twice: {}", again.body);
    let sent: u64 = serde_json::from_str::<serde_json::Value>(&retried.body).unwrap()["sent"].as_u64().unwrap();
    assert_eq!(raw_count(&bus).await, acknowledged + sent);
    shutdown.trigger();
    server.await.unwrap().unwrap();
}

/// `POST /products` needs the bearer token (missing, wrong, truncated,
/// extended, another scheme: 401, nothing written); the ops endpoints do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_requires_the_bearer_token_and_ops_stay_open() {
    let redis = RedisServer::start();
    let bus = redis.bus("auth:").await;
    let ops = Ops::default();
    ops.readiness.set(true);
    let shutdown = Shutdown::default();
    let app = router(Loader::new(&bus), ops, 64 * 1024, token());
    let (addr, server) = serve_http("127.0.0.1:0".parse().unwrap(), app, shutdown.clone()).await.unwrap();
    let url = format!("http://{addr}/products");
    assert_eq!(assert_bearer_required(&url, PRODUCT.as_bytes()).await, 200);
    assert_eq!(raw_count(&bus).await, 1, "only the authorised request wrote");
    for path in ["/healthz", "/readyz", "/metrics"] {
        let response = client::get(&format!("http://{addr}{path}"), Duration::from_secs(10)).await.unwrap();
        assert_eq!(response.status, 200, "{path}");
    }
    let response = client::get(&format!("http://{addr}/nothing"), Duration::from_secs(10)).await.unwrap();
    assert_eq!(response.status, 404, "an unknown path is not a 401");
    shutdown.trigger();
    server.await.unwrap().unwrap();
}
