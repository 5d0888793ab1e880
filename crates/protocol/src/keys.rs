//! Every Redis key lab8 uses, derived from one configurable prefix.

use crate::messages::Stage;

/// Default key prefix (`KEY_PREFIX`).
pub const DEFAULT_PREFIX: &str = "lab8:";

/// Consumer group of the mart on the raw and prediction streams.
pub const MART_GROUP: &str = "mart";
/// Consumer group of the model on the feature stream.
pub const MODEL_GROUP: &str = "model";

/// Field holding the JSON payload of every stream entry.
pub const PAYLOAD_FIELD: &str = "p";

/// Names of all streams and keys under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Default for Keys {
    fn default() -> Self {
        Self::new(DEFAULT_PREFIX)
    }
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into() }
    }

    fn key(&self, name: &str) -> String {
        format!("{}{}", self.prefix, name)
    }

    /// The prefix every key starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    /// Where the source's own keys live (seen codes, its rejection counts).
    pub fn source_prefix(&self) -> String {
        self.key("source:")
    }
    /// Where the mart's tables, aggregates and counts live.
    pub fn mart_prefix(&self) -> String {
        self.key("mart:")
    }
    /// Where the model's own keys live (its rejection counts, backfill locks).
    pub fn model_prefix(&self) -> String {
        self.key("model:")
    }

    /// Stream of raw products written by the source (`RawProduct`).
    pub fn raw_stream(&self) -> String {
        self.key("raw")
    }
    /// Stream of cleaned feature rows written by the mart (`FeatureRow`).
    pub fn features_stream(&self) -> String {
        self.key("features")
    }
    /// Stream of predictions written by the model (`Prediction`).
    pub fn predictions_stream(&self) -> String {
        self.key("predictions")
    }
    /// Stream of rejected records with their reason (`DeadLetter`).
    pub fn dead_letter_stream(&self) -> String {
        self.key("deadletter")
    }
    /// Hash code → version the source has last sent (version-aware idempotent load).
    pub fn seen_codes(&self) -> String {
        self.key("source:seen")
    }
    /// Hash code → `ProductRow` JSON: the mart's product table.
    pub fn mart_products(&self) -> String {
        self.key("mart:products")
    }
    /// Hash code → `Prediction` JSON: the cluster of each product under the
    /// current model. A model being backfilled writes to
    /// [`Keys::model_key`]`(version, "assignments")` until the mart switches
    /// to it; the switch renames that table to this one.
    pub fn mart_assignments(&self) -> String {
        self.key("mart:assignments")
    }
    /// Hash cluster id → `ClusterProfile` JSON of the current model, refreshed
    /// from its aggregates.
    pub fn mart_clusters(&self) -> String {
        self.key("mart:clusters")
    }
    /// String: the model version the mart's view shows.
    pub fn mart_current_model(&self) -> String {
        self.key("mart:current_model")
    }
    /// Hash reason → count of records the mart ignored without a dead letter
    /// (`unchanged`, `stale`, `stale_prediction`, `retired_model`, …).
    pub fn mart_ignored(&self) -> String {
        self.key("mart:ignored")
    }
    /// Counter of product rows replaced by a newer version: with the product
    /// table, the dead letters and the `unchanged` and `stale` counts, every
    /// raw record is accounted for exactly once.
    pub fn mart_replaced(&self) -> String {
        self.key("mart:replaced")
    }
    /// Sorted set of `<name, ASCII-lower-cased>\0<code>` (all score 0): the
    /// product search's index, read by prefix (`ZRANGE … BYLEX`).
    pub fn mart_names(&self) -> String {
        self.key("mart:names")
    }
    /// Hash code → reason of the mart's last rejection of that code (cleared
    /// when a later version of it is accepted): `GET /products/{code}`.
    pub fn mart_rejected_codes(&self) -> String {
        self.key("mart:rejected")
    }
    /// Sorted set model version → when it last started (Unix ms): the newest
    /// is the one the mart moves to.
    pub fn models(&self) -> String {
        self.key("models")
    }
    /// Prefix of every per-model key of the mart.
    pub fn mart_model_prefix(&self) -> String {
        self.key("mart:model:")
    }
    /// A per-model key: `assignments` (while backfilling), `clusters` (set of
    /// cluster ids), `cluster:<id>` (hash count, s0.., q0..: sums and sums of
    /// squares of the fixed-point features), `categories:<id>` (sorted set
    /// tag → products), `members:<id>` (sorted set code → distance to the
    /// centroid, nearest first).
    pub fn model_key(&self, version: &str, part: &str) -> String {
        format!("{}{version}:{part}", self.mart_model_prefix())
    }
    /// Where `version`'s assignments are, given the current model.
    pub fn assignments_of(&self, version: &str, current: Option<&str>) -> String {
        if current == Some(version) {
            self.mart_assignments()
        } else {
            self.model_key(version, "assignments")
        }
    }
    /// Lock held by the model replica backfilling `version`.
    pub fn backfill_lock(&self, version: &str) -> String {
        self.key(&format!("model:backfill:{version}"))
    }
    /// Hash reason → count of the records `stage` rejected (`lab8:mart:rejections`).
    pub fn rejections(&self, stage: Stage) -> String {
        self.key(&format!("{}:rejections", stage.as_str()))
    }

    /// The names the commit scripts derive keys from, as a JSON object (the
    /// scripts get them as an argument rather than spelling them).
    pub fn script_context(&self) -> String {
        serde_json::json!({
            "products": self.mart_products(),
            "assignments": self.mart_assignments(),
            "current": self.mart_current_model(),
            "ignored": self.mart_ignored(),
            "replaced": self.mart_replaced(),
            "names": self.mart_names(),
            "rejected": self.mart_rejected_codes(),
            "models": self.models(),
            "model_prefix": self.mart_model_prefix(),
        })
        .to_string()
    }

    /// Every fixed key this prefix owns; per-model keys start with
    /// [`Keys::mart_model_prefix`].
    pub fn all(&self) -> Vec<String> {
        vec![
            self.raw_stream(),
            self.features_stream(),
            self.predictions_stream(),
            self.dead_letter_stream(),
            self.seen_codes(),
            self.mart_products(),
            self.mart_assignments(),
            self.mart_clusters(),
            self.mart_current_model(),
            self.mart_ignored(),
            self.mart_replaced(),
            self.mart_names(),
            self.mart_rejected_codes(),
            self.models(),
            self.rejections(Stage::Source),
            self.rejections(Stage::Mart),
            self.rejections(Stage::Model),
        ]
    }

    /// The names (and the artifact's path) as shell assignments (`LAB8_RAW_STREAM='lab8:raw'`), the
    /// form scripts read them in: `scripts/keys.sh` is this output, checked
    /// by a test, so no script spells a key by hand.
    pub fn shell_assignments(&self) -> String {
        let named = [
            ("LAB8_RAW_STREAM", self.raw_stream()),
            ("LAB8_FEATURES_STREAM", self.features_stream()),
            ("LAB8_PREDICTIONS_STREAM", self.predictions_stream()),
            ("LAB8_DEAD_LETTER_STREAM", self.dead_letter_stream()),
            ("LAB8_SEEN_CODES", self.seen_codes()),
            ("LAB8_MART_PRODUCTS", self.mart_products()),
            ("LAB8_MART_ASSIGNMENTS", self.mart_assignments()),
            ("LAB8_MART_CLUSTERS", self.mart_clusters()),
            ("LAB8_MART_CURRENT_MODEL", self.mart_current_model()),
            ("LAB8_MART_IGNORED", self.mart_ignored()),
            ("LAB8_MART_REPLACED", self.mart_replaced()),
            ("LAB8_MART_MODEL_PREFIX", self.mart_model_prefix()),
            ("LAB8_MODELS", self.models()),
            ("LAB8_SOURCE_REJECTIONS", self.rejections(Stage::Source)),
            ("LAB8_MART_REJECTIONS", self.rejections(Stage::Mart)),
            ("LAB8_MODEL_REJECTIONS", self.rejections(Stage::Model)),
            ("LAB8_MART_GROUP", MART_GROUP.to_string()),
            ("LAB8_MODEL_GROUP", MODEL_GROUP.to_string()),
            ("LAB8_PAYLOAD_FIELD", PAYLOAD_FIELD.to_string()),
            ("LAB8_ARTIFACT", format!("dist/{}", crate::ARTIFACT_FILE)),
        ];
        named.iter().map(|(name, value)| format!("{name}='{value}'\n")).collect()
    }
}

/// First lines of `scripts/keys.sh`.
pub const KEYS_FILE_HEADER: &str =
    "# Generated from crates/protocol/src/keys.rs (LAB8_REGENERATE=1 cargo test -p lab8-protocol); do not edit.\n# shellcheck shell=bash disable=SC2034\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prefix() {
        let keys = Keys::new("t1:");
        assert_eq!(keys.raw_stream(), "t1:raw");
        assert_eq!(keys.mart_products(), "t1:mart:products");
        assert!(keys.all().iter().all(|k| k.starts_with("t1:")));
        assert_eq!(Keys::default().raw_stream(), "lab8:raw");
        assert_eq!(keys.rejections(Stage::Model), "t1:model:rejections");
    }

    /// Scripts source `scripts/keys.sh`; it must be what the code says.
    #[test]
    fn scripts_keys_file_is_generated_from_here() {
        // At run time: a shared target dir may hold a binary compiled in another clone.
        let crate_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
        let path = format!("{crate_dir}/../../scripts/keys.sh");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        let expected = format!("{}{}", KEYS_FILE_HEADER, Keys::default().shell_assignments());
        if std::env::var_os("LAB8_REGENERATE").is_some() {
            std::fs::write(&path, &expected).expect("write scripts/keys.sh");
            return;
        }
        assert_eq!(committed, expected, "scripts/keys.sh is stale: run LAB8_REGENERATE=1 cargo test -p lab8-protocol");
    }
}
