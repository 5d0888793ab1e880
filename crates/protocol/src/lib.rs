//! The Redis contract of lab8 and the runtime every service shares.
//!
//! This crate is the only place where a stream or key name is spelled
//! ([`keys::Keys`]), where the messages on those streams are defined
//! ([`messages`]) and where the model's feature list lives ([`features`]).
//! [`bus`] wraps the Redis stream consumer pattern (consumer groups, pending
//! entries, XAUTOCLAIM, reconnect with backoff) and [`service`] holds the
//! HTTP health/metrics surface, logging and shutdown handling.

pub mod bus;
pub mod features;
pub mod keys;
pub mod messages;
pub mod service;
#[cfg(feature = "testing")]
pub mod testing;

pub use features::{Feature, FEATURES, N_FEATURES};
pub use keys::Keys;
