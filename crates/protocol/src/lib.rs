//! The contract of lab8: what travels on Redis and what it is called.
//!
//! The only place where a stream or key name is spelled ([`keys::Keys`]),
//! where the messages on those streams are defined ([`messages`]), where the
//! model's feature list lives ([`features`]) and where every rejection
//! reason is named ([`reason::Reason`]), and what each service may do on Redis
//! ([`acl::Role`]: its ACL user's commands and keys). Depends on serde (and serde_json, for a record's canonical form) and nothing else,
//! so anything may depend on it.

pub mod acl;
pub mod features;
pub mod keys;
pub mod messages;
pub mod reason;
pub mod version;

/// The model artifact's file name, as a literal for `concat!` (see [`ARTIFACT_FILE`]).
#[macro_export]
macro_rules! artifact_file {
    () => {
        "model-lab5-1.0.0.zip"
    };
}

/// The model artifact's file name: what training writes under `dist/`, the
/// ConfigMap carries and the init container unpacks.
pub const ARTIFACT_FILE: &str = artifact_file!();

pub use features::{Feature, FEATURES, N_FEATURES};
pub use keys::Keys;
pub use reason::Reason;
pub use version::VersionOrder;
