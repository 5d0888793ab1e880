//! Least privilege on Redis: one ACL user per service, plus one for people
//! running the manual test, each with only the commands it sends and the
//! keys it touches.
//!
//! The key patterns come from [`Keys`], so they follow `KEY_PREFIX` and can
//! never name a key the services do not use. A key a user writes is
//! read-write (`~`): Redis wants both rights for a key a script declares and
//! for read-modify-write commands such as `HINCRBY`. A key it only reads is
//! `%R~`. What is not listed is refused with `NOPERM`.
//!
//! The rules carry no password: whoever configures Redis adds one per user
//! ([`user_line`]: `>password` or `#<sha256>`).

use crate::keys::Keys;

/// Who talks to Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// `lab8-source`: loads and ingests products into the raw stream.
    Source,
    /// `lab8-mart`: consumes raw records and predictions, owns the mart.
    Mart,
    /// `lab8-model`: scores features, trains and backfills from the mart.
    Model,
    /// `lab8-tester`: the manual test — records into the raw stream with
    /// `redis-cli`, and reads (never writes) everything else of lab8.
    Tester,
}

/// Commands every user may send: the connection's own. (Not `CLIENT
/// SETINFO`, which the redis crate sends and ignores a refusal of: Redis
/// 7.0, Debian 12's, does not know it and refuses the whole rule set.)
const CONNECTION: &[&str] = &["ping", "client|setname", "client|getname", "client|id", "echo"];
/// Whether a connection talks to the primary (`ROLE`, read-only, though
/// Redis files it under @admin): the bus checks a primary Sentinel names.
const ROLE: &str = "role";
/// The commit and ingest scripts (EVALSHA, loaded on first use).
const SCRIPTS: &[&str] = &["evalsha", "script|load"];
/// A consumer group's reader: read, acknowledge, take over a dead
/// replica's entries, create the group, inspect and trim its stream.
const CONSUMER: &[&str] = &[
    "xreadgroup",
    "xack",
    "xautoclaim",
    "xpending",
    "xgroup|create",
    "xinfo|groups",
    "xinfo|stream",
    "xlen",
    "xrange",
    "xtrim",
    "xadd",
];

impl Role {
    pub const ALL: [Role; 4] = [Role::Source, Role::Mart, Role::Model, Role::Tester];

    /// The Redis user name (`REDIS_USERNAME`).
    pub fn user(self) -> &'static str {
        match self {
            Role::Source => "lab8-source",
            Role::Mart => "lab8-mart",
            Role::Model => "lab8-model",
            Role::Tester => "lab8-tester",
        }
    }

    /// Keys (glob patterns) this role reads and writes, and those it only reads.
    fn key_patterns(self, keys: &Keys) -> (Vec<String>, Vec<String>) {
        let exact = |key: String| glob_escape(&key);
        let under = |key: String| format!("{}*", glob_escape(&key));
        match self {
            Role::Source => {
                (vec![exact(keys.raw_stream()), under(keys.source_prefix()), exact(keys.dead_letter_stream())], vec![])
            }
            Role::Mart => (
                vec![
                    exact(keys.raw_stream()),
                    exact(keys.features_stream()),
                    exact(keys.predictions_stream()),
                    exact(keys.dead_letter_stream()),
                    under(keys.mart_prefix()),
                    exact(keys.models()),
                ],
                // The rejection counts of every stage, for its read API and /stats.
                vec![under(keys.source_prefix()), under(keys.model_prefix())],
            ),
            Role::Model => (
                vec![
                    exact(keys.features_stream()),
                    exact(keys.predictions_stream()),
                    exact(keys.dead_letter_stream()),
                    under(keys.model_prefix()),
                    exact(keys.models()),
                ],
                // Training and the backfill read the mart; they never write it.
                vec![under(keys.mart_prefix())],
            ),
            Role::Tester => (vec![exact(keys.raw_stream())], vec![under(keys.prefix().to_string())]),
        }
    }

    /// Commands this role may send (besides AUTH, which everyone may).
    fn commands(self) -> Vec<&'static str> {
        let mut commands: Vec<&str> = CONNECTION.to_vec();
        match self {
            Role::Source => {
                commands.extend(SCRIPTS);
                // `WAIT` for replicas to hold what it acknowledges to clients.
                commands.extend([ROLE, "wait", "xadd", "hget", "hset", "hincrby"]);
            }
            Role::Mart => {
                commands.extend(SCRIPTS);
                commands.push(ROLE);
                commands.extend(CONSUMER);
                commands.extend([
                    "get",
                    "set",
                    "del",
                    "unlink",
                    "exists",
                    "incr",
                    "rename",
                    "hget",
                    "hmget",
                    "hgetall",
                    "hvals",
                    "hscan",
                    "hlen",
                    "hexists",
                    "hset",
                    "hsetnx",
                    "hdel",
                    "hincrby",
                    "zadd",
                    "zrem",
                    "zrange",
                    "zrevrange",
                    "zrandmember",
                    "zscore",
                    "zincrby",
                    "zcard",
                    "sadd",
                    "srem",
                    "smembers",
                    // `rebuild` replaces a model's aggregates in one transaction.
                    "hmset",
                    "multi",
                    "exec",
                ]);
            }
            Role::Model => {
                commands.extend(SCRIPTS);
                commands.push(ROLE);
                commands.extend(CONSUMER);
                commands.extend([
                    "get", "set", "del", "hget", "hmget", "hgetall", "hscan", "hlen", "hset", "hsetnx", "hincrby",
                    "zadd", "zrange", "zscore", // The backfill's lock lease, renewed each page.
                    "pexpire",
                ]);
            }
            Role::Tester => commands.extend(["+@read", "xadd", "info"]),
        }
        commands
    }

    /// The rules of this role's user for `keys`' prefix, as `ACL SETUSER`
    /// arguments (without `on` and a password): everything reset first, so
    /// the rules are the whole grant.
    pub fn rules(self, keys: &Keys) -> Vec<String> {
        let (read_write, read_only) = self.key_patterns(keys);
        let mut rules = vec!["reset".to_string(), "resetchannels".to_string(), "-@all".to_string()];
        rules.extend(
            self.commands().into_iter().map(|c| if c.starts_with('+') { c.to_string() } else { format!("+{c}") }),
        );
        rules.extend(read_write.into_iter().map(|p| format!("~{p}")));
        rules.extend(read_only.into_iter().map(|p| format!("%R~{p}")));
        rules
    }
}

/// `role`'s user as a `redis.conf` line, switched on, with `password`
/// (`>plaintext` or `#<sha256 hex>`): `user lab8-source reset … on >…`.
/// Redis takes one line per user.
pub fn user_line(role: Role, keys: &Keys, password: &str) -> String {
    format!("user {} {} on {password}\n", role.user(), role.rules(keys).join(" "))
}

/// First lines of `k8s/base/config/redis-users.acl`.
pub const USERS_FILE_HEADER: &str =
    "# Generated from crates/protocol/src/acl.rs (LAB8_REGENERATE=1 cargo test -p lab8-protocol); do not edit.\n\
# One lab8 user a line: its name, then its rules (no password). The Redis pod's\n\
# start script (redis-start.sh) adds `on` and the password from the Secret\n\
# lab8-redis-users, key = the user's name.\n";

/// Every role's user and rules for `keys`' prefix, one a line (`name rule…`),
/// after [`USERS_FILE_HEADER`]: what the cluster's Redis is configured from.
pub fn users_file(keys: &Keys) -> String {
    let mut file = USERS_FILE_HEADER.to_string();
    for role in Role::ALL {
        file.push_str(&format!("{} {}\n", role.user(), role.rules(keys).join(" ")));
    }
    file
}

/// Escapes Redis glob characters, so a prefix matches only itself.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_follow_the_prefix_and_escape_globs() {
        let rules = Role::Source.rules(&Keys::new("t*1:"));
        assert!(rules.contains(&"~t\\*1:raw".to_string()), "{rules:?}");
        assert!(rules.iter().filter(|r| r.contains('~')).all(|r| r.contains("t\\*1:")), "{rules:?}");
    }

    #[test]
    fn the_source_cannot_reach_the_mart_and_the_model_cannot_write_raw() {
        let keys = Keys::default();
        let source = Role::Source.rules(&keys).join(" ");
        assert!(!source.contains("mart"), "{source}");
        let model = Role::Model.rules(&keys);
        assert!(!model.iter().any(|r| r.ends_with(&keys.raw_stream()) || r.ends_with("lab8:*")), "{model:?}");
        assert!(model.contains(&"%R~lab8:mart:*".to_string()), "{model:?}");
    }

    /// Every key the protocol names is written by some service: a new key
    /// without a grant would be refused in the cluster.
    #[test]
    fn every_key_is_some_services_to_write() {
        let keys = Keys::new("p:");
        let writable: Vec<String> = [Role::Source, Role::Mart, Role::Model]
            .iter()
            .flat_map(|role| role.rules(&keys))
            .filter_map(|rule| rule.strip_prefix('~').map(str::to_string))
            .collect();
        let matches = |pattern: &str, key: &str| match pattern.strip_suffix('*') {
            Some(prefix) => key.starts_with(prefix),
            None => pattern == key,
        };
        for key in keys.all().into_iter().chain([keys.backfill_lock("v1"), keys.model_key("v1", "clusters")]) {
            assert!(writable.iter().any(|p| matches(p, &key)), "no service may write {key}: {writable:?}");
        }
    }

    /// The cluster's Redis takes its users from `k8s/base/config/redis-users.acl`
    /// (the chart links to it): it must be what the code says, for the
    /// `KEY_PREFIX` the manifests set.
    #[test]
    fn the_clusters_users_file_is_generated_from_here() {
        // At run time: a shared target dir may hold a binary compiled in another clone.
        let crate_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
        let root = format!("{crate_dir}/../..");
        let config = std::fs::read_to_string(format!("{root}/k8s/base/config/config.env")).expect("config.env");
        let prefix = config.lines().find_map(|l| l.strip_prefix("KEY_PREFIX=")).expect("KEY_PREFIX in config.env");
        let path = format!("{root}/k8s/base/config/redis-users.acl");
        let expected = users_file(&Keys::new(prefix));
        if std::env::var_os("LAB8_REGENERATE").is_some() {
            std::fs::write(&path, &expected).expect("write redis-users.acl");
            return;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(committed, expected, "{path} is stale: run LAB8_REGENERATE=1 cargo test -p lab8-protocol");
    }

    #[test]
    fn a_user_line_is_one_line_with_its_password() {
        let line = user_line(Role::Model, &Keys::default(), ">secret");
        assert!(line.starts_with("user lab8-model reset ") && line.ends_with(" on >secret\n"), "{line}");
        assert_eq!(line.lines().count(), 1);
    }
}
