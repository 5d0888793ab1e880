//! Test support: a real `redis-server` on a free loopback port with its own
//! temporary directory, stopped when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Bus, RedisArgs};

/// A private redis-server.
pub struct RedisServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    password: Option<String>,
    aof: bool,
}

/// Options of a test server.
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// Require this password.
    pub password: Option<String>,
    /// Append-only persistence (fsync every write) for restart tests.
    pub aof: bool,
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
        let child = spawn(dir.path(), port, &options);
        let server = Self { child, port, dir, password: options.password, aof: options.aof };
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

    pub async fn bus(&self, prefix: &str) -> Bus {
        Bus::connect(&self.args(prefix)).await.expect("connect to the test redis")
    }

    /// Kills the server (SIGKILL) and starts it again on the same port and
    /// directory: with AOF on, everything acknowledged survives.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let options = RedisOptions { password: self.password.clone(), aof: self.aof };
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
