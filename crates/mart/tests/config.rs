//! Bad configuration fails fast, naming the setting, never showing the password.

use std::path::Path;
use std::time::Duration;

use lab8_bus::testing::{run_binary, RedisOptions, RedisServer};

const MART: &str = env!("CARGO_BIN_EXE_lab8-mart");

fn fails_naming(env: &[(&str, &str)], setting: &str) -> String {
    let (status, output) = run_binary(Path::new(MART), &["--once"], env, Duration::from_secs(20));
    assert!(matches!(status, Some(code) if code != 0), "expected a failure for {env:?}, got {status:?}: {output}");
    assert!(output.contains(setting), "the message must name {setting}: {output}");
    output
}

#[test]
fn unparsable_numbers_name_their_setting() {
    fails_naming(&[("BATCH_SIZE", "many")], "BATCH_SIZE");
    fails_naming(&[("BATCH_SIZE", "0")], "BATCH_SIZE");
    fails_naming(&[("BLOCK_MS", "-5")], "BLOCK_MS");
    fails_naming(&[("PROFILE_INTERVAL_SECS", "soon")], "PROFILE_INTERVAL_SECS");
    fails_naming(&[("LOG_FORMAT", "xml")], "LOG_FORMAT");
    fails_naming(&[("TRIM_ACKNOWLEDGED", "maybe")], "TRIM_ACKNOWLEDGED");
}

#[test]
fn bad_redis_settings_fail_fast() {
    fails_naming(&[("REDIS_URL", "http://nowhere")], "REDIS_URL");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("redis://127.0.0.1:{port}");
    fails_naming(&[("REDIS_URL", &url), ("REDIS_CONNECT_TIMEOUT_SECS", "1")], "REDIS_URL");
    fails_naming(&[("REDIS_PASSWORD_FILE", "/nonexistent/password")], "REDIS_PASSWORD_FILE");
}

#[test]
fn a_wrong_password_is_named_and_never_shown() {
    let redis =
        RedisServer::start_with(RedisOptions { password: Some("right-horse-battery".into()), ..Default::default() });
    let url = redis.url();
    let output = fails_naming(&[("REDIS_URL", &url), ("REDIS_PASSWORD", "wrong-staple-secret")], "REDIS_PASSWORD");
    assert!(!output.contains("wrong-staple-secret") && !output.contains("right-horse-battery"), "{output}");
    // In the URL, by mistake: still not shown.
    let url_with_password = format!("redis://:wrong-staple-secret@127.0.0.1:{}", redis.port());
    let output = fails_naming(&[("REDIS_URL", &url_with_password)], "REDIS_PASSWORD");
    assert!(!output.contains("wrong-staple-secret"), "{output}");
    // The right one works.
    let (status, output) = run_binary(
        Path::new(MART),
        &["--once"],
        &[("REDIS_URL", &url), ("REDIS_PASSWORD", "right-horse-battery")],
        Duration::from_secs(20),
    );
    assert_eq!(status, Some(0), "{output}");
    assert!(!output.contains("right-horse-battery"), "{output}");
}
