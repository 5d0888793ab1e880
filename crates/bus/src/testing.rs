//! Test support: a real `redis-server` on a free loopback port with its own
//! temporary directory, stopped when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lab8_protocol::acl::{user_line, Role};
use lab8_protocol::Keys;

use crate::{Bus, RedisArgs};

/// A private redis-server.
pub struct RedisServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    options: RedisOptions,
}

/// Options of a test server.
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// Require this password.
    pub password: Option<String>,
    /// Append-only persistence (fsync every write) for restart tests.
    pub aof: bool,
    /// Create lab8's ACL users (`lab8_protocol::acl`) for this key prefix,
    /// each with the password [`user_password`].
    pub users_prefix: Option<String>,
    /// Start as a replica of the server on this loopback port.
    pub replica_of: Option<u16>,
    /// `min-replicas-to-write`: as a primary, refuse writes with fewer
    /// replicas connected (a primary cut off from its replicas stops
    /// accepting what a failover would lose).
    pub min_replicas_to_write: u32,
}

/// The password of lab8's ACL user `role` on a test server.
pub fn user_password(role: Role) -> String {
    format!("{}-test-password", role.user())
}

/// Where a test server started with users keeps `role`'s password.
pub fn user_password_file(dir: &Path, role: Role) -> PathBuf {
    dir.join(format!("{}.password", role.user()))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free loopback port")
}

impl RedisServer {
    /// Starts a server without password or persistence.
    pub fn start() -> Self {
        Self::start_with(RedisOptions::default())
    }

    pub fn start_with(options: RedisOptions) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        if options.users_prefix.is_some() {
            for role in Role::ALL {
                std::fs::write(user_password_file(dir.path(), role), user_password(role)).expect("password file");
            }
        }
        let child = spawn(dir.path(), port, &options);
        let server = Self { child, port, dir, options };
        server.wait_until_up();
        server
    }

    fn wait_until_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start on port {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Settings for this server with a key prefix of its own.
    pub fn args(&self, prefix: &str) -> RedisArgs {
        let mut args = RedisArgs::for_url(self.url(), prefix);
        if let Some(password) = &self.options.password {
            let file = self.dir.path().join("password");
            std::fs::write(&file, password).expect("password file");
            args.password_file = Some(file);
        }
        args
    }

    /// Settings that log in as lab8's ACL user `role` (a server started with
    /// [`RedisOptions::users_prefix`]); its password in a file, as the cluster gives it.
    pub fn args_as(&self, prefix: &str, role: Role) -> RedisArgs {
        assert!(self.options.users_prefix.is_some(), "start the server with RedisOptions::users_prefix");
        let mut args = RedisArgs::for_url(self.url(), prefix);
        args.username = Some(role.user().to_string());
        args.password_file = Some(user_password_file(self.dir.path(), role));
        args
    }

    pub async fn bus(&self, prefix: &str) -> Bus {
        Bus::connect(&self.args(prefix)).await.expect("connect to the test redis")
    }

    /// What Redis refused since it started, from `ACL LOG` (as the admin):
    /// "user: context on object (reason)", one entry each (all of them:
    /// `ACL LOG` alone shows the last 10).
    pub async fn acl_denials(&self) -> Vec<String> {
        let mut conn = self.bus("").await.conn();
        let log: Vec<std::collections::HashMap<String, redis::Value>> =
            redis::cmd("ACL").arg("LOG").arg(100_000).query_async(&mut conn).await.expect("ACL LOG");
        let text = |entry: &std::collections::HashMap<String, redis::Value>, field: &str| match entry.get(field) {
            Some(redis::Value::BulkString(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
            Some(other) => format!("{other:?}"),
            None => String::new(),
        };
        log.iter()
            .map(|e| {
                format!(
                    "{}: {} on {} ({})",
                    text(e, "username"),
                    text(e, "context"),
                    text(e, "object"),
                    text(e, "reason")
                )
            })
            .collect()
    }

    /// Kills the server (SIGKILL) and starts it again on the same port and
    /// directory: with AOF on, everything acknowledged survives.
    pub fn restart(&mut self) {
        self.kill();
        self.start_again();
    }

    /// SIGKILL: the server is gone until [`RedisServer::start_again`].
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a killed server again: same port, directory and configuration.
    pub fn start_again(&mut self) {
        self.child = spawn(self.dir.path(), self.port, &self.options);
        self.wait_until_up();
    }

    /// A blocking admin connection (for test set-up, outside any runtime).
    pub fn admin(&self) -> redis::RedisResult<redis::Connection> {
        let client = self.args("").client().expect("test client");
        client.get_connection_with_timeout(Duration::from_secs(2))
    }
}

fn spawn(dir: &Path, port: u16, options: &RedisOptions) -> Child {
    let mut command = Command::new("redis-server");
    command.arg("-").current_dir(dir).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null());
    // Configuration on stdin keeps the password out of the process arguments.
    let mut config = format!("port {port}\nbind 127.0.0.1\ndir {}\nsave \"\"\n", dir.display());
    if options.aof {
        config.push_str("appendonly yes\nappendfsync always\n");
    }
    if let Some(primary) = options.replica_of {
        config.push_str(&format!("replicaof 127.0.0.1 {primary}\n"));
    }
    if let Some(password) = &options.password {
        // Any node may become a replica (Sentinel demotes a returning primary).
        config.push_str(&format!("masterauth {password}\n"));
    }
    if options.min_replicas_to_write > 0 {
        config.push_str(&format!("min-replicas-to-write {}\nmin-replicas-max-lag 5\n", options.min_replicas_to_write));
    }
    if let Some(password) = &options.password {
        config.push_str(&format!("requirepass {password}\n"));
    }
    if let Some(prefix) = &options.users_prefix {
        for role in Role::ALL {
            config.push_str(&user_line(role, &Keys::new(prefix.clone()), &format!(">{}", user_password(role))));
        }
    }
    let mut child = command.spawn().expect("redis-server on PATH (apt-get install redis-server)");
    use std::io::Write;
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(config.as_bytes()).expect("write redis config");
    drop(stdin);
    child
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a binary with the given env (and nothing else inherited but PATH),
/// returns its exit status and everything it printed.
/// The repository root, found at run time from the crate cargo runs the test
/// in: a target directory shared by clones at other paths (CI, `~/.cache`)
/// keeps test binaries compiled in another clone, whose compile-time
/// `CARGO_MANIFEST_DIR` may no longer exist.
pub fn repo_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join("../..")
}

pub fn run_binary(binary: &Path, args: &[&str], env: &[(&str, &str)], timeout: Duration) -> (Option<i32>, String) {
    let mut command = Command::new(binary);
    command.args(args).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let output = child.wait_with_output().unwrap();
            let text =
                format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
            return (status.code(), text);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            return (
                None,
                format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)),
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The name the test Sentinels monitor the primary under.
pub const SENTINEL_MASTER: &str = "lab8";

/// A Sentinel process watching a primary.
struct Sentinel {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Sentinel {
    /// A Sentinel monitoring the node on `port` as the primary, quorum 2.
    fn start(port_monitored: u16, password: Option<&str>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut config = format!(
            "port {port}\nbind 127.0.0.1\ndir {dir}\nsentinel monitor {SENTINEL_MASTER} 127.0.0.1 {port_monitored} 2\n\
             sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\nsentinel failover-timeout {SENTINEL_MASTER} 4000\n",
            dir = dir.path().display()
        );
        if let Some(password) = password {
            config.push_str(&format!("sentinel auth-pass {SENTINEL_MASTER} {password}\n"));
        }
        // Sentinel rewrites its configuration file: it cannot come from stdin.
        let file = dir.path().join("sentinel.conf");
        std::fs::write(&file, config).expect("sentinel.conf");
        let child = Command::new("redis-server")
            .arg(&file)
            .arg("--sentinel")
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server --sentinel (apt-get install redis-server)");
        let sentinel = Self { child, port, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while sentinel_query::<String>(port, &["PING"]).is_none() {
            assert!(Instant::now() < deadline, "Sentinel on port {port} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        sentinel
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A primary with replicas and three Sentinels (quorum 2) on free loopback
/// ports: the shape of a production Redis. Failure detection is fast
/// (`down-after-milliseconds` 1000) so a failover takes seconds.
pub struct ReplicatedRedis {
    pub nodes: Vec<RedisServer>,
    sentinels: Vec<Sentinel>,
    stale_sentinels: Vec<Sentinel>,
}

impl ReplicatedRedis {
    /// Node 0 starts as the primary, the others replicate it; every node has
    /// `options` (password, users) and `min-replicas-to-write 1`. Returns
    /// once the replicas are in sync and every Sentinel knows them all.
    pub fn start(replicas: usize, options: RedisOptions) -> Self {
        let options = RedisOptions { min_replicas_to_write: 1, ..options };
        let primary = RedisServer::start_with(options.clone());
        let primary_port = primary.port();
        let mut nodes = vec![primary];
        for _ in 0..replicas {
            nodes.push(RedisServer::start_with(RedisOptions { replica_of: Some(primary_port), ..options.clone() }));
        }
        let set = Self { sentinels: Vec::new(), stale_sentinels: Vec::new(), nodes };
        for i in 1..=replicas {
            set.wait_synced(i, Duration::from_secs(20));
        }
        let mut set = set;
        for _ in 0..3 {
            let sentinel = Sentinel::start(primary_port, options.password.as_deref());
            set.sentinels.push(sentinel);
        }
        set.wait_until(Duration::from_secs(30), "the Sentinels know every replica and each other", |set| {
            set.sentinels.iter().all(|s| {
                let known = |what: &str| {
                    sentinel_query::<Vec<redis::Value>>(s.port, &["SENTINEL", what, SENTINEL_MASTER]).map(|v| v.len())
                };
                known("REPLICAS") == Some(replicas) && known("SENTINELS") == Some(2)
            })
        });
        set
    }

    /// Starts a fourth Sentinel that takes node `node` (a replica) for the
    /// primary, as a Sentinel restarted from an old configuration would (it
    /// keeps naming it while no failover raises the epoch); its `host:port`.
    pub fn start_stale_sentinel(&mut self, node: usize) -> String {
        let password = self.nodes[node].options.password.clone();
        let sentinel = Sentinel::start(self.nodes[node].port(), password.as_deref());
        let address = format!("127.0.0.1:{}", sentinel.port);
        self.stale_sentinels.push(sentinel);
        address
    }

    /// `host:port` of every Sentinel, as `REDIS_SENTINELS` takes them.
    pub fn sentinel_addresses(&self) -> Vec<String> {
        self.sentinels.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect()
    }

    /// Settings that find the primary through the Sentinels, as the admin.
    pub fn args(&self, prefix: &str) -> RedisArgs {
        RedisArgs { sentinels: self.sentinel_addresses(), ..self.nodes[0].args(prefix) }
    }

    /// Settings that find the primary through the Sentinels, as `role`'s user.
    pub fn args_as(&self, prefix: &str, role: Role) -> RedisArgs {
        RedisArgs { sentinels: self.sentinel_addresses(), ..self.nodes[0].args_as(prefix, role) }
    }

    /// The node the Sentinels name as the primary.
    pub fn primary(&self) -> Option<usize> {
        let named = self.sentinels.iter().find_map(|s| {
            sentinel_query::<Option<(String, u16)>>(s.port, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_MASTER])
                .flatten()
        })?;
        self.nodes.iter().position(|n| n.port() == named.1)
    }

    /// SIGKILLs the primary; returns its index.
    pub fn kill_primary(&mut self) -> usize {
        let primary = self.primary().expect("a primary");
        self.nodes[primary].kill();
        primary
    }

    /// Waits until the Sentinels name a primary other than `old`, and that
    /// node says it is one; returns it.
    pub fn wait_for_failover(&self, old: usize, timeout: Duration) -> usize {
        self.wait_until(timeout, "a failover", |set| {
            set.primary().is_some_and(|p| p != old && role_of(&set.nodes[p]).as_deref() == Some("master"))
        });
        self.primary().expect("a primary")
    }

    /// Starts a killed node again; the Sentinels make it a replica of the
    /// current primary. Returns once it is in sync.
    pub fn bring_back(&mut self, node: usize, timeout: Duration) {
        self.nodes[node].start_again();
        self.wait_synced(node, timeout);
    }

    fn wait_synced(&self, node: usize, timeout: Duration) {
        self.wait_until(timeout, "a replica in sync with its primary", |set| {
            let Ok(mut conn) = set.nodes[node].admin() else { return false };
            let info: String = redis::cmd("INFO").arg("replication").query(&mut conn).unwrap_or_default();
            info.contains("role:slave") && info.contains("master_link_status:up")
        });
    }

    fn wait_until(&self, timeout: Duration, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn role_of(node: &RedisServer) -> Option<String> {
    let mut conn = node.admin().ok()?;
    let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut conn).ok()?;
    redis::from_redis_value(role.first()?.clone()).ok()
}

fn sentinel_query<T: redis::FromRedisValue>(port: u16, command: &[&str]) -> Option<T> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(2)).ok()?;
    let mut cmd = redis::cmd(command[0]);
    for arg in &command[1..] {
        cmd.arg(*arg);
    }
    cmd.query(&mut conn).ok()
}
