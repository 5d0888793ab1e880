//! /predict over a real socket with the committed artifact: answers, refuses
//! malformed and oversized bodies with a 4xx, keeps serving.

use std::sync::Arc;
use std::time::Duration;

use lab8_model::artifact::{ModelArtifact, DEFAULT_ARTIFACT_PATH};
use lab8_model::service::{router, ModelMetrics, PredictResponse};
use lab8_service::auth::testing::{assert_bearer_required, bearer, TEST_TOKEN};
use lab8_service::auth::{ApiAuth, Token};
use lab8_service::{client, serve_http, Ops, Shutdown};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predict_answers_and_refuses_bad_bodies() {
    let zip = lab8_bus::testing::repo_root().join(DEFAULT_ARTIFACT_PATH);
    let model = Arc::new(ModelArtifact::read_zip(&zip).unwrap());
    let shutdown = Shutdown::default();
    let ops = Ops::default();
    let auth = ApiAuth::Token(Token::new(TEST_TOKEN).unwrap());
    let app = router(model.clone(), ops.clone(), ModelMetrics::register(&ops.metrics), 16 * 1024, auth);
    let (addr, server) = serve_http("127.0.0.1:0".parse().unwrap(), app, shutdown.clone()).await.unwrap();
    let call = |body: Vec<u8>| async move {
        let url = format!("http://{addr}/predict");
        let (name, value) = bearer();
        let response = client::request_with_headers("POST", &url, &[(name, &value)], body, Duration::from_secs(10))
            .await
            .expect("POST /predict");
        Ok::<_, ()>((response.status, response.body))
    };
    let cookie = r#"{"energy_kj":2100,"fat_g":25,"saturated_fat_g":12,"carbohydrates_g":60,"sugars_g":30,"fiber_g":2,"proteins_g":6,"salt_g":0.6}"#;
    let (status, body) = call(cookie.as_bytes().to_vec()).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let answer: PredictResponse = serde_json::from_str(&body).unwrap();
    let expected = model.predict(&[2100.0, 25.0, 12.0, 60.0, 30.0, 2.0, 6.0, 0.6]);
    assert_eq!((answer.cluster, answer.distance), expected);
    let (status, body) = call(format!("[{cookie},{cookie}]").into_bytes()).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Vec<PredictResponse>>(&body).unwrap().len(), 2);
    // Text values follow the mart's policy too: "2100" is a number, "lots" is not.
    let as_text = cookie.replace("2100", "\"2100\"");
    let (status, body) = call(as_text.into_bytes()).await.unwrap();
    assert_eq!((status, serde_json::from_str::<PredictResponse>(&body).unwrap().cluster), (200, answer.cluster));
    let text_value = r#"{"energy_kj":"lots","fat_g":1,"saturated_fat_g":1,"carbohydrates_g":1,"sugars_g":1,"proteins_g":1,"salt_g":1}"#;
    // A value the mart would reject is refused with the mart's reason.
    let too_fat = cookie.replace(r#""fat_g":25"#, r#""fat_g":150"#);
    for (bad, expected, reason) in [
        (b"{nope".to_vec(), 400, "malformed JSON"),
        (br#"{"fat_g": 1}"#.to_vec(), 422, "missing_required:energy_kj"),
        (text_value.as_bytes().to_vec(), 422, "unparsable_number:energy_100g"),
        (too_fat.into_bytes(), 422, "out_of_range:fat_g"),
        (vec![b'['; 64 * 1024], 413, ""),
    ] {
        let (status, body) = call(bad).await.unwrap();
        assert_eq!(status, expected, "{body}");
        assert!(body.contains(reason), "{body} should name {reason}");
    }
    let (status, _) = call(cookie.as_bytes().to_vec()).await.unwrap();
    assert_eq!(status, 200, "still serving");
    // Without the right bearer token: 401; GET /model and the ops endpoints stay open.
    assert_eq!(assert_bearer_required(&format!("http://{addr}/predict"), cookie.as_bytes()).await, 200);
    for path in ["/model", "/healthz", "/metrics"] {
        let response = client::get(&format!("http://{addr}{path}"), Duration::from_secs(10)).await.unwrap();
        assert_eq!(response.status, 200, "{path}");
    }
    shutdown.trigger();
    server.await.unwrap().unwrap();
}
