//! Redis streams as lab8's bus.
//!
//! Delivery is at least once: entries stay pending until acknowledged, and a
//! dead consumer's entries are reclaimed with XAUTOCLAIM ([`consumer`]).
//! Every batch ends with one atomic [`commit`] that applies an entry's
//! effects only when its XACK succeeds, so a redelivered entry never takes
//! effect twice. One module per job:
//!
//! - [`config`]: settings from flags and env vars, the password, errors naming them;
//! - [`connection`]: connecting with backoff, blocking readers, consumer groups;
//! - [`consumer`]: own pending entries, then reclaimed ones, then new ones; the consume loop;
//! - [`commit`]: `commit.lua` and the effects each entry states;
//! - [`ingest`]: the source's idempotent add (`ingest.lua`) and its dead letters;
//! - [`maintenance`]: trimming acknowledged entries, reading a table in pages;
//! - `inspect` and `testing` (feature `testing`): read-only views and a private redis-server.

pub mod commit;
pub mod config;
pub mod connection;
pub mod consumer;
pub mod ingest;
#[cfg(feature = "testing")]
pub mod inspect;
pub mod maintenance;
#[cfg(feature = "testing")]
pub mod testing;

pub use commit::{commit, CommitScript, CommitTarget, Committed, Effects, TableWrite, VERSION_LUA};
pub use config::{redact_url, BusError, ConsumerArgs, RedisArgs, ReplicaWait};
pub use connection::{Backoff, Bus};
pub use consumer::{consume, ConsumerOptions, Entry, StreamConsumer};
