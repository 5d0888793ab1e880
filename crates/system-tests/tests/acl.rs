//! Least privilege on Redis (`lab8_protocol::acl`): every service logs in
//! as its own ACL user and the whole pipeline runs with nothing refused;
//! each user is refused outside its rights, scripts included.

use std::time::Duration;

use lab8_bus::testing::{run_binary, user_password_file, RedisOptions, RedisServer};
use lab8_bus::{Bus, BusError};
use lab8_protocol::acl::Role;
use lab8_system_tests::harness::{
    assert_every_raw_record_accounted_once, assert_profiles_match_rebuild, settle_within, Services,
};
use lab8_system_tests::{binary, root, sample_files};

const PREFIX: &str = "acl:";

fn server() -> RedisServer {
    RedisServer::start_with(RedisOptions {
        password: Some("acl-admin-password".into()),
        users_prefix: Some(PREFIX.into()),
        ..Default::default()
    })
}

/// Runs a service binary as `role`'s user; its exit code and output.
fn run_as(redis: &RedisServer, role: Role, binary_name: &str, args: &[&str]) -> (Option<i32>, String) {
    let password_file = user_password_file(redis.dir(), role);
    let env = [
        ("REDIS_URL", redis.url()),
        ("REDIS_USERNAME", role.user().to_string()),
        ("REDIS_PASSWORD_FILE", password_file.display().to_string()),
        ("KEY_PREFIX", PREFIX.to_string()),
        ("RUST_LOG", "warn".to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    run_binary(&binary(binary_name), args, &env, Duration::from_secs(300))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_as_its_own_user_runs_the_pipeline_with_nothing_refused() {
    let redis = server();
    let admin = redis.bus(PREFIX).await;
    let dir = tempfile::tempdir().unwrap();

    // The source loads two of the sample's files.
    let files: Vec<String> = sample_files().iter().take(2).map(|p| p.display().to_string()).collect();
    let mut args = vec!["load", "--category-from-file-name"];
    args.extend(files.iter().map(String::as_str));
    let (code, output) = run_as(&redis, Role::Source, "lab8-source", &args);
    assert_eq!(code, Some(0), "lab8-source load as lab8-source: {output}");

    // The mart and the model, each as its own user, until everything has a cluster.
    let model_dir = dir.path().join("model");
    lab8_model::artifact::unpack(&root().join(lab8_model::DEFAULT_ARTIFACT_PATH), &model_dir).unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let services = Services {
        redis_url: redis.url(),
        password_file: None,
        users_dir: Some(redis.dir().to_path_buf()),
        sentinels: Vec::new(),
        prefix: PREFIX.into(),
        model_dir,
        logs: logs.clone(),
    };
    let mut mart = services.spawn("mart", 0);
    let mut model = services.spawn("model", 0);
    if let Err(state) = settle_within(&admin, Duration::from_secs(120)).await {
        let refused = redis.acl_denials().await;
        panic!(
            "the pipeline did not settle under its ACL users: {state}; refused: {refused:?}; logs in {}",
            dir.keep().join("logs").display()
        );
    }
    mart.kill();
    model.kill();
    assert_every_raw_record_accounted_once(&admin).await;
    assert!(assert_profiles_match_rebuild(&admin).await > 0, "profiles count the products");

    // Training and the mart's repair tool read and write as their services.
    let artifact = dir.path().join("trained.zip");
    let artifact_arg = artifact.display().to_string();
    let (code, output) = run_as(&redis, Role::Model, "lab8-model", &["train", "--k", "4", "--output", &artifact_arg]);
    assert_eq!(code, Some(0), "lab8-model train as lab8-model: {output}");
    assert!(artifact.exists(), "training wrote its artifact");
    for args in [&["rebuild", "--check"][..], &["rebuild"]] {
        let (code, output) = run_as(&redis, Role::Mart, "lab8-mart", args);
        assert_eq!(code, Some(0), "lab8-mart {args:?} as lab8-mart: {output}");
    }

    let refused = redis.acl_denials().await;
    assert!(refused.is_empty(), "Redis refused the services' own work: {refused:#?}");
}

/// What a user tries, and whether its rights allow it.
struct Try {
    role: Role,
    command: &'static [&'static str],
    allowed: bool,
}

const fn allowed(role: Role, command: &'static [&'static str]) -> Try {
    Try { role, command, allowed: true }
}
const fn refused(role: Role, command: &'static [&'static str]) -> Try {
    Try { role, command, allowed: false }
}

#[tokio::test]
async fn each_user_is_refused_outside_its_rights() {
    use Role::*;
    let redis = server();
    let tries = [
        // The model cannot write the raw stream, even from a script; it reads the mart, never writes it.
        refused(Model, &["XADD", "acl:raw", "*", "p", "{}"]),
        refused(Model, &["EVAL", "return redis.call('XADD', 'acl:raw', '*', 'p', '{}')", "0"]),
        refused(Model, &["HSET", "acl:mart:products", "c1", "{}"]),
        refused(Model, &["DEL", "acl:mart:assignments"]),
        allowed(Model, &["HGET", "acl:mart:products", "c1"]),
        allowed(Model, &["XADD", "acl:predictions", "*", "p", "{}"]),
        // The source cannot read the mart's tables, nor the model's stream.
        refused(Source, &["HGET", "acl:mart:products", "c1"]),
        refused(Source, &["HGETALL", "acl:mart:assignments"]),
        refused(Source, &["XRANGE", "acl:features", "-", "+"]),
        refused(Source, &["EVAL", "return redis.call('HGET', 'acl:mart:products', 'c1')", "0"]),
        allowed(Source, &["XADD", "acl:raw", "*", "p", "{}"]),
        allowed(Source, &["HSET", "acl:source:seen", "c1", "1"]),
        // The mart reads the source's counts but cannot change what the source has seen, nor another prefix.
        refused(Mart, &["HSET", "acl:source:seen", "c1", "2"]),
        refused(Mart, &["DEL", "acl:model:backfill:v1"]),
        refused(Mart, &["XADD", "other:raw", "*", "p", "{}"]),
        allowed(Mart, &["HGET", "acl:source:seen", "c1"]),
        allowed(Mart, &["XADD", "acl:features", "*", "p", "{}"]),
        // The manual test: records into the raw stream, reads of everything, no other write.
        allowed(Tester, &["XADD", "acl:raw", "*", "p", "{}"]),
        allowed(Tester, &["HGET", "acl:mart:assignments", "c1"]),
        allowed(Tester, &["HGETALL", "acl:mart:rejections"]),
        refused(Tester, &["HSET", "acl:mart:products", "c1", "{}"]),
        refused(Tester, &["DEL", "acl:raw"]),
        refused(Tester, &["XREADGROUP", "GROUP", "mart", "me", "STREAMS", "acl:raw", ">"]),
        // Nobody administers Redis.
        refused(Source, &["FLUSHALL"]),
        refused(Mart, &["CONFIG", "GET", "*"]),
        refused(Model, &["ACL", "SETUSER", "lab8-model", "+@all"]),
        refused(Tester, &["SHUTDOWN", "NOSAVE"]),
        refused(Mart, &["EVAL", "return redis.call('FLUSHALL')", "0"]),
    ];
    let mut failures = Vec::new();
    for t in &tries {
        let bus = Bus::connect(&redis.args_as(PREFIX, t.role)).await.expect("log in as the role's user");
        let mut conn = bus.conn();
        let mut cmd = redis::cmd(t.command[0]);
        for arg in &t.command[1..] {
            cmd.arg(*arg);
        }
        let result: redis::RedisResult<redis::Value> = cmd.query_async(&mut conn).await;
        let denied = match &result {
            // NOPERM, or a script's call refused (Redis words that one differently).
            Err(e) => e.code() == Some("NOPERM") || e.to_string().contains("The user executing the script can't"),
            Ok(_) => false,
        };
        if t.allowed == denied || (t.allowed && result.is_err()) {
            failures.push(format!(
                "{} {:?}: expected {}, got {result:?}",
                t.role.user(),
                t.command,
                if t.allowed { "allowed" } else { "NOPERM" }
            ));
        }
    }
    assert!(failures.is_empty(), "rights differ from lab8_protocol::acl:\n{}", failures.join("\n"));
    // Redis logged each refusal: the log the pipeline test finds empty is the one that shows them.
    let logged = redis.acl_denials().await;
    let expected = tries.iter().filter(|t| !t.allowed).count();
    assert_eq!(logged.len(), expected, "one ACL LOG entry per refusal: {logged:#?}");

    // Another user's password is refused at start, naming the settings.
    let mut wrong = redis.args_as(PREFIX, Model);
    wrong.password_file = Some(user_password_file(redis.dir(), Source));
    let err = Bus::connect(&wrong).await.err().expect("a wrong password is refused");
    assert!(matches!(err, BusError::Auth { .. }) && err.to_string().contains("REDIS_USERNAME"), "{err}");
}
