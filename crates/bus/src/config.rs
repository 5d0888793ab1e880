//! Settings: where Redis is, its password, the key prefix, and how a
//! consumer reads (`clap` flags and env vars).

use std::path::PathBuf;
use std::time::Duration;

use lab8_protocol::Keys;
use redis::{Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo};

use crate::consumer::ConsumerOptions;

/// Redis settings shared by every service (`clap` flags and env vars).
///
/// The password is read from `REDIS_PASSWORD_FILE` or the `REDIS_PASSWORD`
/// env var only, never from a flag, so it cannot show in process arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct RedisArgs {
    /// Redis address without credentials.
    #[arg(long = "redis-url", env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub url: String,
    /// Redis ACL user to log in as (the cluster gives each service its own,
    /// with only its commands and keys: `lab8_protocol::acl`); without it,
    /// the password is the `default` user's.
    #[arg(long = "redis-username", env = "REDIS_USERNAME")]
    pub username: Option<String>,
    /// File holding the Redis password (the cluster mounts the Secret here);
    /// otherwise the `REDIS_PASSWORD` env var is used when set.
    #[arg(long = "redis-password-file", env = "REDIS_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
    /// Prefix of every key and stream.
    #[arg(long = "key-prefix", env = "KEY_PREFIX", default_value = lab8_protocol::keys::DEFAULT_PREFIX)]
    pub key_prefix: String,
    /// How long to keep trying to reach Redis at start-up before failing.
    #[arg(long = "redis-connect-timeout-secs", env = "REDIS_CONNECT_TIMEOUT_SECS", default_value_t = 30)]
    pub connect_timeout_secs: u64,
    /// Sentinels to discover the primary through (`host:port,host:port,…`);
    /// when set, `REDIS_URL`'s address is not used, and the services follow
    /// the primary across failovers.
    #[arg(long = "redis-sentinels", env = "REDIS_SENTINELS", value_delimiter = ',')]
    pub sentinels: Vec<String>,
    /// The name the Sentinels monitor the primary under.
    #[arg(long = "redis-sentinel-master", env = "REDIS_SENTINEL_MASTER", default_value = "lab8")]
    pub sentinel_master: String,
    /// File holding the Sentinels' own password (their `requirepass`), if they have one.
    #[arg(long = "redis-sentinel-password-file", env = "REDIS_SENTINEL_PASSWORD_FILE")]
    pub sentinel_password_file: Option<PathBuf>,
    /// Acknowledged writes (the source's answer to its client) wait until
    /// this many replicas have them (`WAIT`); 0: the primary's word is enough.
    #[arg(long = "redis-wait-replicas", env = "REDIS_WAIT_REPLICAS", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=16))]
    pub wait_replicas: u32,
    /// How long such a write waits for its replicas before it fails (an
    /// error the client may retry: loading products is idempotent).
    #[arg(long = "redis-wait-timeout-ms", env = "REDIS_WAIT_TIMEOUT_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=5000))]
    pub wait_timeout_ms: u64,
}

impl RedisArgs {
    /// Settings for a given URL, password from the environment as usual.
    pub fn for_url(url: impl Into<String>, key_prefix: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            username: None,
            password_file: None,
            key_prefix: key_prefix.into(),
            connect_timeout_secs: 30,
            sentinels: Vec::new(),
            sentinel_master: "lab8".into(),
            sentinel_password_file: None,
            wait_replicas: 0,
            wait_timeout_ms: 2000,
        }
    }

    pub fn keys(&self) -> Keys {
        Keys::new(self.key_prefix.clone())
    }

    fn password(&self) -> Result<Option<String>, BusError> {
        if let Some(path) = &self.password_file {
            return read_password_file(path).map(Some);
        }
        Ok(std::env::var("REDIS_PASSWORD").ok().filter(|p| !p.is_empty()))
    }

    /// The URL's address and login, with the user and password settings applied.
    fn connection_info(&self) -> Result<ConnectionInfo, BusError> {
        let invalid = |reason: String| BusError::InvalidUrl { url: redact_url(&self.url), reason };
        let info = self.url.as_str().into_connection_info().map_err(|e| invalid(e.to_string()))?;
        let mut settings = info.redis_settings().clone();
        if let Some(username) = self.username.as_deref().filter(|u| !u.is_empty()) {
            settings = settings.set_username(username);
        }
        if let Some(password) = self.password()? {
            settings = settings.set_password(password);
        }
        Ok(info.set_redis_settings(settings))
    }

    /// A client for these settings; fails on a malformed URL.
    pub fn client(&self) -> Result<Client, BusError> {
        Client::open(self.connection_info()?)
            .map_err(|e| BusError::InvalidUrl { url: redact_url(&self.url), reason: e.to_string() })
    }

    /// Where the primary is: `REDIS_URL`, or what the Sentinels say.
    pub(crate) fn discovery(&self) -> Result<Discovery, BusError> {
        let login = self.connection_info()?;
        if self.sentinels.is_empty() {
            return Ok(Discovery::Direct(login));
        }
        let sentinel_password = self.sentinel_password_file.as_deref().map(read_password_file).transpose()?;
        let mut sentinels = Vec::new();
        for address in self.sentinels.iter().map(|a| a.trim()).filter(|a| !a.is_empty()) {
            let invalid = || BusError::InvalidSentinel { address: address.to_string() };
            let (host, port) = address.rsplit_once(':').ok_or_else(invalid)?;
            let port: u16 = port.parse().map_err(|_| invalid())?;
            let mut info: ConnectionInfo = ConnectionAddr::Tcp(host.to_string(), port).into_connection_info()?;
            if let Some(password) = &sentinel_password {
                let settings = info.redis_settings().clone().set_password(password);
                info = info.set_redis_settings(settings);
            }
            sentinels.push(info);
        }
        if sentinels.is_empty() {
            return Err(BusError::InvalidSentinel { address: self.sentinels.join(",") });
        }
        Ok(Discovery::Sentinel { sentinels, master: self.sentinel_master.clone(), login })
    }

    /// How acknowledged writes wait for replicas.
    pub fn replica_wait(&self) -> ReplicaWait {
        ReplicaWait { replicas: self.wait_replicas, timeout_ms: self.wait_timeout_ms }
    }
}

/// Where the primary is found.
#[derive(Debug, Clone)]
pub(crate) enum Discovery {
    /// At `REDIS_URL`, always.
    Direct(ConnectionInfo),
    /// Wherever the Sentinels say `master` is; `login` holds the user and password.
    Sentinel { sentinels: Vec<ConnectionInfo>, master: String, login: ConnectionInfo },
}

/// How many replicas an acknowledged write waits for (`WAIT`), and how long.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplicaWait {
    pub replicas: u32,
    pub timeout_ms: u64,
}

fn read_password_file(path: &std::path::Path) -> Result<String, BusError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| BusError::PasswordFile { path: path.to_path_buf(), source })?;
    Ok(text.trim_end_matches(['\r', '\n']).to_string())
}

/// Hides credentials a user may have put in a Redis URL before it is logged.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_string(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("REDIS_URL {url:?} is not a valid Redis URL: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("REDIS_SENTINELS: {address:?} is not a host:port list")]
    InvalidSentinel { address: String },
    #[error("no Sentinel of REDIS_SENTINELS ({sentinels}) names a reachable primary for REDIS_SENTINEL_MASTER {master:?}: {reason}")]
    NoPrimary { sentinels: String, master: String, reason: String },
    #[error("the write is on {got} of the {wanted} replicas REDIS_WAIT_REPLICAS asks for after {timeout_ms} ms (a retry adds no product twice)")]
    NotReplicated { wanted: u32, got: u32, timeout_ms: u64 },
    #[error("password file {path:?} (REDIS_PASSWORD_FILE or REDIS_SENTINEL_PASSWORD_FILE) cannot be read: {source}")]
    PasswordFile { path: PathBuf, source: std::io::Error },
    #[error("REDIS_USERNAME and REDIS_PASSWORD (or REDIS_PASSWORD_FILE) were refused by Redis at {url}: {reason}")]
    Auth { url: String, reason: String },
    #[error("REDIS_URL {url} is unreachable after {secs} s: {source}")]
    Unreachable { url: String, secs: u64, source: redis::RedisError },
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
}

pub(crate) fn is_auth_error(e: &redis::RedisError) -> bool {
    let text = e.to_string();
    text.contains("WRONGPASS")
        || text.contains("NOAUTH")
        || text.contains("invalid password")
        || text.contains("AuthenticationFailed")
}

/// Consumer-group settings shared by the mart and the model.
#[derive(Debug, Clone, clap::Args)]
pub struct ConsumerArgs {
    /// Consumer name in the consumer groups, unique per replica; defaults to
    /// `HOSTNAME` (the pod name in the cluster).
    #[arg(long = "consumer-name", env = "CONSUMER_NAME")]
    pub consumer_name: Option<String>,
    /// Largest batch read from a stream at once.
    #[arg(long = "batch-size", env = "BATCH_SIZE", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub batch_size: u64,
    /// How long a read waits for new entries, in milliseconds.
    #[arg(long = "block-ms", env = "BLOCK_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub block_ms: u64,
    /// Entries pending this long at another consumer (a dead replica) are taken over.
    #[arg(long = "claim-idle-secs", env = "CLAIM_IDLE_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub claim_idle_secs: u64,
}

impl ConsumerArgs {
    pub fn name(&self) -> String {
        self.consumer_name
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_string()))
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "lab8".to_string())
    }
}

impl From<&ConsumerArgs> for ConsumerOptions {
    fn from(args: &ConsumerArgs) -> Self {
        Self {
            batch: args.batch_size as usize,
            block: Duration::from_millis(args.block_ms),
            claim_idle: Duration::from_secs(args.claim_idle_secs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials_in_urls() {
        assert_eq!(redact_url("redis://:secret@host:6379"), "redis://***@host:6379");
        assert_eq!(redact_url("redis://host:6379"), "redis://host:6379");
    }

    #[test]
    fn invalid_url_names_the_setting() {
        let err = RedisArgs::for_url("not a url", "x:").client().expect_err("must fail");
        assert!(err.to_string().starts_with("REDIS_URL"), "{err}");
    }
}
