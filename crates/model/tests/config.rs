//! The model refuses a missing or corrupt model at start, naming MODEL_DIR.

use std::path::Path;
use std::time::Duration;

use lab8_bus::testing::{run_binary, RedisServer};
use lab8_model::DEFAULT_ARTIFACT_PATH;

const MODEL: &str = env!("CARGO_BIN_EXE_lab8-model");

fn serve(model_dir: &Path, redis: &RedisServer) -> (Option<i32>, String) {
    let url = redis.url();
    let dir = model_dir.to_str().unwrap();
    run_binary(
        Path::new(MODEL),
        &["serve", "--once"],
        &[("MODEL_DIR", dir), ("REDIS_URL", &url)],
        Duration::from_secs(20),
    )
}

#[test]
fn missing_or_corrupt_models_fail_fast_naming_model_dir() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (status, output) = serve(&dir.path().join("absent"), &redis);
    assert!(status.is_some_and(|c| c != 0) && output.contains("MODEL_DIR"), "{status:?} {output}");
    std::fs::write(dir.path().join("model.json"), "{ not a model").unwrap();
    let (status, output) = serve(dir.path(), &redis);
    assert!(
        status.is_some_and(|c| c != 0) && output.contains("MODEL_DIR") && output.contains("not a valid model"),
        "{output}"
    );
    // The committed artifact, unpacked by the binary itself, serves.
    let zip = lab8_bus::testing::repo_root().join(DEFAULT_ARTIFACT_PATH);
    let out = dir.path().join("unpacked");
    let (status, output) = run_binary(
        Path::new(MODEL),
        &["unpack", zip.to_str().unwrap(), out.to_str().unwrap()],
        &[],
        Duration::from_secs(10),
    );
    assert_eq!(status, Some(0), "{output}");
    let (status, output) = serve(&out, &redis);
    assert_eq!(status, Some(0), "{output}");
    assert!(output.contains("model loaded"), "{output}");
}

/// Serving /predict with no token configured fails fast, naming the setting
/// (before Redis or the model are touched).
#[test]
fn serving_without_a_token_fails_fast_naming_api_token_file() {
    let (status, output) =
        run_binary(Path::new(MODEL), &["serve"], &[("MODEL_DIR", "/nonexistent")], Duration::from_secs(10));
    assert!(status.is_some_and(|c| c != 0) && output.contains("API_TOKEN_FILE"), "{status:?} {output}");
    let (status, output) = run_binary(
        Path::new(MODEL),
        &["serve"],
        &[("MODEL_DIR", "/nonexistent"), ("API_TOKEN", "short")],
        Duration::from_secs(10),
    );
    assert!(status.is_some_and(|c| c != 0) && output.contains("at least 16 characters"), "{status:?} {output}");
}
