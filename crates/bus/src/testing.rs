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
    password: Option<String>,
    aof: bool,
    users_prefix: Option<String>,
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
        let server =
            Self { child, port, dir, password: options.password, aof: options.aof, users_prefix: options.users_prefix };
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
        if let Some(password) = &self.password {
            let file = self.dir.path().join("password");
            std::fs::write(&file, password).expect("password file");
            args.password_file = Some(file);
        }
        args
    }

    /// Settings that log in as lab8's ACL user `role` (a server started with
    /// [`RedisOptions::users_prefix`]); its password in a file, as the cluster gives it.
    pub fn args_as(&self, prefix: &str, role: Role) -> RedisArgs {
        assert!(self.users_prefix.is_some(), "start the server with RedisOptions::users_prefix");
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
        let mut conn = self.bus("").await.conn;
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
        let _ = self.child.kill();
        let _ = self.child.wait();
        let options =
            RedisOptions { password: self.password.clone(), aof: self.aof, users_prefix: self.users_prefix.clone() };
        self.child = spawn(self.dir.path(), self.port, &options);
        self.wait_until_up();
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
