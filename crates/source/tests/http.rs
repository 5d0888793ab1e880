//! The ingest API over a real socket and a real redis-server: batches and
//! single products go in once per code; oversized and malformed bodies get a
//! 4xx and the server keeps serving.

use std::time::Duration;

use lab8_bus::inspect::entries_added;
use lab8_bus::testing::RedisServer;
use lab8_bus::Bus;
use lab8_service::{client, serve_http, Ops, Shutdown};
use lab8_source::http::router;
use lab8_source::Loader;

const PRODUCT: &str = r#"{"code":"h1","product_name":"Bread","energy_100g":1000,"fat_100g":3}"#;

async fn raw_count(bus: &Bus) -> u64 {
    entries_added(&mut bus.conn.clone(), &bus.keys().raw_stream()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_over_http_and_refuse_bad_bodies() {
    let redis = RedisServer::start();
    let bus = redis.bus("h:").await;
    let ops = Ops::default();
    let shutdown = Shutdown::default();
    let app = router(Loader::new(&bus), ops.clone(), 64 * 1024);
    let (addr, server) = serve_http("127.0.0.1:0".parse().unwrap(), app, shutdown.clone()).await.unwrap();
    let call = |method: &'static str, path: &'static str, body: Vec<u8>| async move {
        let response = client::request(method, &format!("http://{addr}{path}"), body, Duration::from_secs(10)).await;
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
