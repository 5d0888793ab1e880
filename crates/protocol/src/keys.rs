//! Every Redis key lab8 uses, derived from one configurable prefix.

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

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, name: &str) -> String {
        format!("{}{}", self.prefix, name)
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
    /// Set of product codes the source has already accepted (idempotent load).
    pub fn seen_codes(&self) -> String {
        self.key("source:seen")
    }
    /// Hash code → `ProductRow` JSON: the mart's product table.
    pub fn mart_products(&self) -> String {
        self.key("mart:products")
    }
    /// Hash code → `Prediction` JSON: the cluster of each product.
    pub fn mart_assignments(&self) -> String {
        self.key("mart:assignments")
    }
    /// Hash cluster id → `ClusterProfile` JSON, recomputed from the two tables above.
    pub fn mart_clusters(&self) -> String {
        self.key("mart:clusters")
    }
    /// Hash reason → count of records the mart rejected.
    pub fn mart_rejections(&self) -> String {
        self.key("mart:rejections")
    }

    /// Every key this prefix owns (for cleanup in tests and tools).
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
            self.mart_rejections(),
        ]
    }
}

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
    }
}
