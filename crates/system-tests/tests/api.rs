//! The mart's read API and page over HTTP, against a real redis-server with
//! the bundled sample loaded, scored by the committed model.

use std::time::Duration;

use lab8_bus::testing::RedisServer;
use lab8_bus::ConsumerOptions;
use lab8_mart::api::{router, ApiState, MAX_PAGE};
use lab8_mart::{service, MartConfig, MartMetrics};
use lab8_model::service::{score_stream, ModelMetrics};
use lab8_model::{ModelArtifact, DEFAULT_ARTIFACT_PATH};
use lab8_service::client::get;
use lab8_service::{serve_http, Shutdown};
use lab8_source::input::ReadOptions;
use lab8_source::Loader;
use lab8_system_tests::harness::MartState;
use lab8_system_tests::{root, sample_files};
use serde_json::Value;

async fn call(base: &str, path: &str) -> (u16, Value) {
    let response = get(&format!("{base}{path}"), Duration::from_secs(10)).await.unwrap();
    let body = serde_json::from_str(&response.body).unwrap_or(Value::String(response.body));
    (response.status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_api_answers_from_the_mart() {
    let redis = RedisServer::start();
    let bus = redis.bus("api:").await;
    let options = ReadOptions { category_from_file_name: true, ..Default::default() };
    Loader::new(&bus).load_files(&sample_files(), &options, 1000, false).await.unwrap();
    let config = MartConfig {
        consumer: "api".into(),
        consumer_options: ConsumerOptions::default(),
        profile_interval: Duration::from_secs(1),
        trim_acknowledged: false,
    };
    service::drain(&bus, &config, &MartMetrics::default()).await.unwrap();
    let model = ModelArtifact::read_zip(&root().join(DEFAULT_ARTIFACT_PATH)).unwrap();
    let shutdown = Shutdown::default();
    score_stream(&bus, &model, &ModelMetrics::default(), "api", ConsumerOptions::default(), &shutdown, true)
        .await
        .unwrap();
    service::drain(&bus, &config, &MartMetrics::default()).await.unwrap();
    let mart = MartState::read(&bus).await;

    let state = ApiState::default();
    let (addr, _server) =
        serve_http("127.0.0.1:0".parse().unwrap(), router(state.clone()), shutdown.clone()).await.unwrap();
    let base = format!("http://{addr}");
    assert_eq!(call(&base, "/api/v1/stats").await.0, 503, "not connected yet");
    state.set_bus(bus.clone());

    // Clusters: the model's k, sizes adding up to the mart.
    let (status, clusters) = call(&base, "/api/v1/clusters").await;
    assert_eq!(status, 200);
    assert_eq!(clusters["model_version"], model.model_version);
    let cards = clusters["clusters"].as_array().unwrap();
    assert_eq!(cards.len(), model.k);
    let sizes: u64 = cards.iter().map(|c| c["size"].as_u64().unwrap()).sum();
    assert_eq!(sizes as usize, mart.products.len());
    assert!(cards[0]["mean"]["fat_g"].is_number() && cards[0]["std"]["fat_g"].is_number());
    assert!(!cards[0]["top_categories"].as_array().unwrap().is_empty());

    // A cluster's products, nearest first, page by page.
    let id = cards[0]["cluster"].as_u64().unwrap();
    let (status, first) = call(&base, &format!("/api/v1/clusters/{id}/products?limit=5")).await;
    assert_eq!(status, 200);
    let distances = |page: &Value| -> Vec<f64> {
        page["products"].as_array().unwrap().iter().map(|p| p["distance"].as_f64().unwrap()).collect()
    };
    let d1 = distances(&first);
    assert_eq!(d1.len(), 5);
    assert!(d1.windows(2).all(|w| w[0] <= w[1]), "nearest first: {d1:?}");
    assert_eq!(first["next_cursor"], "5");
    let (_, second) = call(&base, &format!("/api/v1/clusters/{id}/products?limit=5&cursor=5")).await;
    let d2 = distances(&second);
    assert!(d2[0] >= d1[4], "the next page continues the order");
    let code = first["products"][0]["code"].as_str().unwrap();
    assert_eq!(mart.assignments[code].cluster as u64, id);
    for (path, expected) in [
        (format!("/api/v1/clusters/{id}/products?limit={}", MAX_PAGE + 1), 400),
        (format!("/api/v1/clusters/{id}/products?cursor=x"), 400),
        ("/api/v1/clusters/abc/products".into(), 400),
        ("/api/v1/clusters/999/products".into(), 404),
        ("/api/v1/nothing-here".into(), 404),
        ("/api/v1/search?q=a".into(), 400),
        ("/api/v1/search?q=mu&limit=500".into(), 400),
        ("/api/v1/products/no-such-code".into(), 404),
    ] {
        let (status, body) = call(&base, &path).await;
        assert_eq!(status, expected, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: errors are JSON");
    }

    // One product: its features, its cluster, the cluster's mean beside them.
    let (status, product) = call(&base, &format!("/api/v1/products/{code}")).await;
    assert_eq!(status, 200);
    assert_eq!(product["cluster"].as_u64(), Some(id));
    assert_eq!(product["model_version"], model.model_version);
    assert_eq!(product["features"]["fat_g"].as_f64(), Some(mart.products[code].x[1]));
    assert!(product["cluster_mean"]["fat_g"].is_number());
    // A rejected one: its reason.
    let rejected: std::collections::BTreeMap<String, String> =
        redis::cmd("HGETALL").arg(bus.keys().mart_rejected_codes()).query_async(&mut bus.conn()).await.unwrap();
    let (bad_code, reason) = rejected.iter().find(|(c, _)| !mart.products.contains_key(*c)).unwrap();
    let (status, body) = call(&base, &format!("/api/v1/products/{bad_code}")).await;
    assert_eq!(
        (status, body["status"].as_str(), body["reason"].as_str()),
        (200, Some("rejected"), Some(reason.as_str()))
    );

    // Search by the beginning of a name: a known product is found with its cluster.
    let name = mart.products[code].name.clone().unwrap();
    let prefix: String = name.chars().take(6).collect();
    let (status, found) = call(&base, &format!("/api/v1/search?q={}", urlencode(&prefix))).await;
    assert_eq!(status, 200, "{found}");
    let results = found["results"].as_array().unwrap();
    assert!(results.len() <= 20 && !results.is_empty());
    let lower = prefix.to_ascii_lowercase();
    assert!(results.iter().all(|r| r["name"].as_str().unwrap().to_ascii_lowercase().starts_with(&lower)));
    let (_, exact) = call(&base, &format!("/api/v1/search?q={}&limit=50", urlencode(&name))).await;
    assert!(exact["results"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["code"] == code && r["cluster"].as_u64() == Some(id)));

    // Stats: what was read, kept and rejected.
    let (_, stats) = call(&base, "/api/v1/stats").await;
    assert_eq!(stats["records_read"], 17_072);
    assert_eq!(stats["products"].as_u64(), Some(mart.products.len() as u64));
    // Every record read is a product, a replaced or ignored version, or a rejection.
    let sum = |v: &Value| -> u64 { v.as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum() };
    let ignored = stats["ignored"]["unchanged"].as_u64().unwrap_or(0) + stats["ignored"]["stale"].as_u64().unwrap_or(0);
    let accounted = stats["products"].as_u64().unwrap()
        + stats["replaced"].as_u64().unwrap()
        + ignored
        + sum(&stats["rejected"]["mart"]);
    assert_eq!(accounted, 17_072, "{stats}");
    assert!(stats["replaced"].as_u64().unwrap() > 0, "the sample's codes listed twice replace their first record");
    assert_eq!(stats["model_version"], model.model_version);
    assert!(stats["backlogs"].as_array().unwrap().iter().all(|b| b["lag"] == 0 && b["pending"] == 0));

    // The map's sample: at most per_cluster products of each cluster, with features.
    let (status, map) = call(&base, "/api/v1/map?per_cluster=10").await;
    assert_eq!(status, 200);
    let points = map["points"].as_array().unwrap();
    assert_eq!(points.len(), 10 * model.k, "10 of each cluster (each has more)");
    for point in points {
        let code = point["code"].as_str().unwrap();
        assert_eq!(point["cluster"].as_u64(), Some(mart.assignments[code].cluster as u64));
        assert_eq!(point["x"].as_array().unwrap().len(), 8);
    }
    assert_eq!(call(&base, "/api/v1/map?per_cluster=1000").await.0, 400);

    // The page.
    let page = get(&format!("{base}/"), Duration::from_secs(5)).await.unwrap();
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<title>lab8 — the data mart</title>") && page.body.contains("/api/v1/clusters"));
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
