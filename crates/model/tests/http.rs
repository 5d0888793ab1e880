//! /predict over a real socket with the committed artifact: answers, refuses
//! malformed and oversized bodies with a 4xx, keeps serving.

use std::path::Path;
use std::sync::Arc;

use lab8_model::artifact::ModelArtifact;
use lab8_model::service::{router, PredictResponse};
use lab8_protocol::service::{serve_http, Ops, Shutdown};
use lab8_protocol::testing::http_request;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predict_answers_and_refuses_bad_bodies() {
    let zip = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist/model-lab5-1.0.0.zip");
    let model = Arc::new(ModelArtifact::read_zip(&zip).unwrap());
    let shutdown = Shutdown::default();
    let app = router(model.clone(), Ops::default(), 16 * 1024);
    let (addr, server) = serve_http("127.0.0.1:0".parse().unwrap(), app, shutdown.clone()).await.unwrap();
    let call = |body: Vec<u8>| tokio::task::spawn_blocking(move || http_request(addr, "POST", "/predict", &body));
    let cookie = r#"{"energy_kj":2100,"fat_g":25,"saturated_fat_g":12,"carbohydrates_g":60,"sugars_g":30,"fiber_g":2,"proteins_g":6,"salt_g":0.6}"#;
    let (status, body) = call(cookie.as_bytes().to_vec()).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let answer: PredictResponse = serde_json::from_str(&body).unwrap();
    let expected = model.predict(&[2100.0, 25.0, 12.0, 60.0, 30.0, 2.0, 6.0, 0.6]);
    assert_eq!((answer.cluster, answer.distance), expected);
    let (status, body) = call(format!("[{cookie},{cookie}]").into_bytes()).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Vec<PredictResponse>>(&body).unwrap().len(), 2);
    let text_value = r#"{"energy_kj":"lots","fat_g":1,"saturated_fat_g":1,"carbohydrates_g":1,"sugars_g":1,"proteins_g":1,"salt_g":1}"#;
    for (bad, expected) in [
        (b"{nope".to_vec(), 400),
        (br#"{"fat_g": 1}"#.to_vec(), 422),
        (text_value.as_bytes().to_vec(), 422),
        (vec![b'['; 64 * 1024], 413),
    ] {
        let (status, body) = call(bad).await.unwrap();
        assert_eq!(status, expected, "{body}");
    }
    let (status, _) = call(cookie.as_bytes().to_vec()).await.unwrap();
    assert_eq!(status, 200, "still serving");
    shutdown.trigger();
    server.await.unwrap().unwrap();
}
