//! Settings: where Redis is, its password, the key prefix, and how a
//! consumer reads (`clap` flags and env vars).

use std::path::PathBuf;
use std::time::Duration;

use lab8_protocol::Keys;
use redis::{Client, IntoConnectionInfo};

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
        }
    }

    pub fn keys(&self) -> Keys {
        Keys::new(self.key_prefix.clone())
    }

    fn password(&self) -> Result<Option<String>, BusError> {
        if let Some(path) = &self.password_file {
            let text = std::fs::read_to_string(path)
                .map_err(|source| BusError::PasswordFile { path: path.clone(), source })?;
            return Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()));
        }
        Ok(std::env::var("REDIS_PASSWORD").ok().filter(|p| !p.is_empty()))
    }

    /// A client for these settings; fails on a malformed URL.
    pub fn client(&self) -> Result<Client, BusError> {
        let invalid = |reason: String| BusError::InvalidUrl { url: redact_url(&self.url), reason };
        let info = self.url.as_str().into_connection_info().map_err(|e| invalid(e.to_string()))?;
        let mut settings = info.redis_settings().clone();
        if let Some(username) = self.username.as_deref().filter(|u| !u.is_empty()) {
            settings = settings.set_username(username);
        }
        if let Some(password) = self.password()? {
            settings = settings.set_password(password);
        }
        let info = info.set_redis_settings(settings);
        Client::open(info).map_err(|e| invalid(e.to_string()))
    }
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
    #[error("REDIS_PASSWORD_FILE {path:?} cannot be read: {source}")]
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
