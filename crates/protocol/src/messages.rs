//! Messages carried on the lab8 streams and stored in the mart's tables.
//! All are JSON in the stream entry field [`crate::keys::PAYLOAD_FIELD`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::features::N_FEATURES;
use crate::reason::Reason;

/// A product as the source read it: identifiers and text fields normalised to
/// one layout, nutrient values kept as the text found in the input. The mart
/// parses and validates them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RawProduct {
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub categories: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nutriscore: Option<String>,
    /// Export column (`fat_100g`, `energy-kcal_100g`, …) → value as text.
    #[serde(default)]
    pub nutrients: BTreeMap<String, String>,
    /// OpenFoodFacts' `last_modified_t` (Unix seconds), when the export has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<i64>,
}

impl RawProduct {
    /// This record's version (see [`crate::version`]): its timestamp and a
    /// hash of its canonical JSON (nutrients are a sorted map).
    pub fn version(&self) -> String {
        crate::version::version_of(self.last_modified, &serde_json::to_vec(self).expect("a product serialises"))
    }
}

/// A cleaned product, ready for the model: features in [`crate::FEATURES`] order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureRow {
    pub code: String,
    pub x: [f64; N_FEATURES],
    /// Version of the product these features come from; the prediction
    /// carries it back so that a prediction of replaced content is ignored.
    #[serde(default)]
    pub version: String,
}

/// The model's answer for one feature row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub code: String,
    pub cluster: u32,
    /// Euclidean distance to the centroid in standardised feature space.
    pub distance: f64,
    pub model_version: String,
    /// [`FeatureRow::version`] of the scored features.
    #[serde(default)]
    pub product_version: String,
}

/// Where a rejected record was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Source,
    Mart,
    Model,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Source => "source",
            Stage::Mart => "mart",
            Stage::Model => "model",
        }
    }
}

/// A record that did not make it, with a machine-readable reason such as
/// `out_of_range:fat_g`. Written as stream fields, not JSON, so that
/// `redis-cli XRANGE` reads well.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub stage: Stage,
    pub reason: Reason,
    /// Product code when one could be read, else empty.
    pub code: String,
    /// Stream entry id of the rejected record, when it had one.
    pub entry_id: String,
    /// The record as received, cut to [`DeadLetter::MAX_PAYLOAD`] bytes.
    pub payload: String,
}

impl DeadLetter {
    /// Longest payload kept in a dead letter.
    pub const MAX_PAYLOAD: usize = 4096;

    pub fn new(stage: Stage, reason: Reason, code: &str, entry_id: &str, payload: &[u8]) -> Self {
        Self {
            stage,
            reason,
            code: code.to_string(),
            entry_id: entry_id.to_string(),
            payload: Self::cut_payload(payload),
        }
    }

    /// At most [`DeadLetter::MAX_PAYLOAD`] bytes of a record, as text.
    pub fn cut_payload(payload: &[u8]) -> String {
        String::from_utf8_lossy(&payload[..payload.len().min(Self::MAX_PAYLOAD)]).into_owned()
    }

    /// Stream fields for XADD, in [`DEAD_LETTER_FIELDS`] order.
    pub fn fields(&self) -> [(&'static str, String); 5] {
        let [stage, reason, code, entry, payload] = DEAD_LETTER_FIELDS;
        [
            (stage, self.stage.as_str().to_string()),
            (reason, self.reason.wire_name()),
            (code, self.code.clone()),
            (entry, self.entry_id.clone()),
            (payload, self.payload.clone()),
        ]
    }
}

/// Field names of a dead-letter entry (the commit script writes the same).
pub const DEAD_LETTER_FIELDS: [&str; 5] = ["stage", "reason", "code", "entry", "payload"];

/// One row of the mart's product table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductRow {
    pub code: String,
    pub name: Option<String>,
    pub categories: Option<String>,
    pub nutriscore: Option<String>,
    /// Clean features in [`crate::FEATURES`] order.
    pub x: [f64; N_FEATURES],
    /// Features whose value was imputed by the missing-value policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub imputed: Vec<String>,
    /// [`RawProduct::version`] of the record this row was cleaned from.
    pub version: String,
    /// Normalised category tags ([`crate::version::category_tags`]), what
    /// the cluster profiles count.
    pub tags: Vec<String>,
    /// `x` in fixed point ([`crate::version::fixed_point`]), what the
    /// aggregates add up; the commit script reads it.
    pub fixed: [i64; N_FEATURES],
}

impl ProductRow {
    /// A row from a raw record and its clean features.
    pub fn new(raw: &RawProduct, version: String, x: [f64; N_FEATURES], imputed: Vec<String>) -> Self {
        Self {
            code: raw.code.clone(),
            name: raw.name.clone(),
            categories: raw.categories.clone(),
            nutriscore: raw.nutriscore.clone(),
            x,
            imputed,
            version,
            tags: raw.categories.as_deref().map(crate::version::category_tags).unwrap_or_default(),
            fixed: crate::version::fixed_point(&x),
        }
    }
}

/// Per-cluster profile materialised by the mart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterProfile {
    pub cluster: u32,
    pub count: u64,
    /// Mean of each feature, in [`crate::FEATURES`] order.
    pub mean: [f64; N_FEATURES],
    /// Standard deviation (population) of each feature.
    #[serde(default)]
    pub std: [f64; N_FEATURES],
    /// Most frequent categories with their product counts, most frequent first.
    pub top_categories: Vec<(String, u64)>,
    pub model_version: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_product_round_trips_and_tolerates_missing_fields() {
        let p: RawProduct = serde_json::from_str(r#"{"code":"1","nutrients":{"fat_100g":"1,5"}}"#).unwrap();
        assert_eq!(p.code, "1");
        assert_eq!(p.nutrients["fat_100g"], "1,5");
        let back: RawProduct = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn dead_letter_cuts_payload_and_names_reason_kind() {
        let big = vec![b'a'; 10_000];
        let dl = DeadLetter::new(Stage::Mart, Reason::OutOfRange("fat_g"), "42", "1-0", &big);
        assert_eq!(dl.payload.len(), DeadLetter::MAX_PAYLOAD);
        assert_eq!(dl.fields()[0], ("stage", "mart".to_string()));
        assert_eq!(dl.fields()[1], ("reason", "out_of_range:fat_g".to_string()));
    }
}
