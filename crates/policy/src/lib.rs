//! The cleaning policy: one function from a raw product's nutrients to the
//! model's features or the reason they are refused. The mart's batches
//! (vectorised with Polars, `lab8_mart::clean`) and the model's `/predict`
//! apply it; a test runs the bad-input corpus through both and requires the
//! same verdict on every case.
//!
//! The first rule a record breaks is its reason:
//!
//! | order | rule | reason |
//! |---|---|---|
//! | 1 | every present value parses as a finite number (`,` accepted as decimal separator), columns in [`input_columns`] order | `unparsable_number:<column>` / `non_finite:<column>` |
//! | 2 | energy: `energy_100g` (kJ), else `energy-kcal_100g` × [`KJ_PER_KCAL`] | — |
//! | 3 | salt: `salt_100g`, else `sodium_100g` × [`SALT_PER_SODIUM`]; both given must agree within max([`SALT_SODIUM_TOLERANCE_G`], [`SALT_SODIUM_TOLERANCE_RELATIVE`] × salt) | `salt_sodium_mismatch` |
//! | 4 | missing values: a feature in [`IMPUTED_WHEN_MISSING`] takes its value there (marked imputed); any other missing feature rejects | `missing_required:<feature>` |
//! | 5 | no negative value | `negative_value:<feature>` |
//! | 6 | each value ≤ [`max_value`] (100 g; energy [`MAX_ENERGY_KJ`]) | `out_of_range:<feature>` |
//! | 7 | fat + carbohydrates + proteins + fiber ≤ 100 g + [`MACRO_SUM_TOLERANCE_G`] | `macro_sum_exceeds_100` |
//! | 8 | saturated fat ≤ fat, sugars ≤ carbohydrates (+ [`PART_TOLERANCE_G`]) | `saturated_fat_exceeds_fat`, `sugars_exceed_carbohydrates` |
//! | 9 | one product per code, its newest version (`last_modified_t`, else arrival order for other content; applied atomically in the mart's commit) | none: the same version is ignored as `unchanged`, an older one as `stale` (counted in `lab8:mart:ignored`) |

use std::collections::BTreeMap;

use lab8_protocol::features::{feature_index, ENERGY_KCAL_COLUMN, SODIUM_COLUMN};
use lab8_protocol::{Reason, FEATURES, N_FEATURES};
use serde_json::Value;

/// Upper bound of energy per 100 g (pure fat is about 3700 kJ).
pub const MAX_ENERGY_KJ: f64 = 3800.0;
/// Upper bound of every gram value per 100 g.
pub const MAX_GRAMS: f64 = 100.0;
/// kJ per kcal.
pub const KJ_PER_KCAL: f64 = 4.184;
/// Salt = sodium × 2.5 (EU labelling rule).
pub const SALT_PER_SODIUM: f64 = 2.5;
/// Salt and sodium agree when they differ by at most this many grams…
pub const SALT_SODIUM_TOLERANCE_G: f64 = 0.05;
/// …or by this share of the salt, whichever is larger.
pub const SALT_SODIUM_TOLERANCE_RELATIVE: f64 = 0.1;
/// Rounding on labels lets the macronutrients add up to a little over 100 g.
pub const MACRO_SUM_TOLERANCE_G: f64 = 3.0;
/// Rounding tolerance for a part (saturated fat, sugars) against its whole.
pub const PART_TOLERANCE_G: f64 = 0.1;
/// Features imputed when missing, with their value; every other feature is required.
pub const IMPUTED_WHEN_MISSING: &[(&str, f64)] = &[("fiber_g", 0.0)];
/// Features summed by the macronutrient rule.
pub const MACRO_FEATURES: [&str; 4] = ["fat_g", "carbohydrates_g", "proteins_g", "fiber_g"];
/// (part, whole) pairs: the part may not exceed the whole.
pub const PARTS: [(&str, &str, Reason); 2] = [
    ("saturated_fat_g", "fat_g", Reason::SaturatedFatExceedsFat),
    ("sugars_g", "carbohydrates_g", Reason::SugarsExceedCarbohydrates),
];

/// Largest value a feature may take.
pub fn max_value(feature: &str) -> f64 {
    if feature == "energy_kj" {
        MAX_ENERGY_KJ
    } else {
        MAX_GRAMS
    }
}

/// Value a missing feature takes, when it may be missing.
pub fn imputed_value(feature: &str) -> Option<f64> {
    IMPUTED_WHEN_MISSING.iter().find(|(name, _)| *name == feature).map(|(_, v)| *v)
}

/// Input columns, in the order they are parsed: the features' own export
/// columns followed by the two derivation sources.
pub fn input_columns() -> Vec<&'static str> {
    lab8_protocol::features::raw_nutrient_columns().collect()
}

/// Why a number was refused (rule 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberError {
    Unparsable,
    NonFinite,
}

impl NumberError {
    /// The reason naming `column`.
    pub fn reason(self, column: &'static str) -> Reason {
        match self {
            NumberError::Unparsable => Reason::UnparsableNumber(column),
            NumberError::NonFinite => Reason::NonFinite(column),
        }
    }
}

/// Parses a nutrient value: trims, accepts a comma as decimal separator
/// when there is no dot, refuses anything non-finite.
pub fn parse_number(text: &str) -> Result<f64, NumberError> {
    let trimmed = text.trim();
    let normalised;
    let candidate = if trimmed.contains(',') && !trimmed.contains('.') && trimmed.matches(',').count() == 1 {
        normalised = trimmed.replace(',', ".");
        normalised.as_str()
    } else {
        trimmed
    };
    // Rust accepts "inf", "NaN" and "1e400" (→ inf): all rejected as non-finite.
    match candidate.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(NumberError::NonFinite),
        Err(_)
            if ["nan", "inf", "infinity", "-inf", "+inf", "-infinity"]
                .contains(&candidate.to_ascii_lowercase().as_str()) =>
        {
            Err(NumberError::NonFinite)
        }
        Err(_) => Err(NumberError::Unparsable),
    }
}

/// Parses one nutrient column's text: absent or blank is `None`.
pub fn parse_nutrient(text: Option<&str>, column: &'static str) -> Result<Option<f64>, Reason> {
    match text {
        None => Ok(None),
        Some(t) if t.trim().is_empty() => Ok(None),
        Some(t) => parse_number(t).map(Some).map_err(|e| e.reason(column)),
    }
}

/// Whether salt and salt derived from sodium disagree (rule 3).
pub fn salt_sodium_disagree(salt: f64, sodium: f64) -> bool {
    let from_sodium = sodium * SALT_PER_SODIUM;
    let relative = salt * SALT_SODIUM_TOLERANCE_RELATIVE;
    let tolerance = if relative > SALT_SODIUM_TOLERANCE_G { relative } else { SALT_SODIUM_TOLERANCE_G };
    salt - from_sodium > tolerance || from_sodium - salt > tolerance
}

/// A product that passed: features in [`FEATURES`] order and those imputed.
#[derive(Debug, Clone, PartialEq)]
pub struct Cleaned {
    pub x: [f64; N_FEATURES],
    pub imputed: Vec<&'static str>,
}

/// The policy: nutrients (export column → text) to features, or the first
/// rule they break.
pub fn clean(nutrients: &BTreeMap<String, String>) -> Result<Cleaned, Reason> {
    let mut parsed = BTreeMap::new();
    for column in input_columns() {
        parsed.insert(column, parse_nutrient(nutrients.get(column).map(String::as_str), column)?);
    }
    let own = |feature: &str| parsed[FEATURES[feature_index(feature).expect("known feature")].off_column];
    let mut values: [Option<f64>; N_FEATURES] = FEATURES.map(|f| parsed[f.off_column]);
    let slot = |feature: &str| feature_index(feature).expect("known feature");
    values[slot("energy_kj")] = own("energy_kj").or(parsed[ENERGY_KCAL_COLUMN].map(|kcal| kcal * KJ_PER_KCAL));
    values[slot("salt_g")] = own("salt_g").or(parsed[SODIUM_COLUMN].map(|sodium| sodium * SALT_PER_SODIUM));
    if let (Some(salt), Some(sodium)) = (own("salt_g"), parsed[SODIUM_COLUMN]) {
        if salt_sodium_disagree(salt, sodium) {
            return Err(Reason::SaltSodiumMismatch);
        }
    }
    let mut imputed = Vec::new();
    let mut x = [0.0; N_FEATURES];
    for ((value, out), feature) in values.iter().zip(x.iter_mut()).zip(FEATURES) {
        *out = match (value, imputed_value(feature.name)) {
            (Some(v), _) => *v,
            (None, Some(v)) => {
                imputed.push(feature.name);
                v
            }
            (None, None) => return Err(Reason::MissingRequired(feature.name)),
        };
    }
    if let Some(f) = FEATURES.iter().zip(x).find(|(_, v)| *v < 0.0) {
        return Err(Reason::NegativeValue(f.0.name));
    }
    if let Some(f) = FEATURES.iter().zip(x).find(|(f, v)| *v > max_value(f.name)) {
        return Err(Reason::OutOfRange(f.0.name));
    }
    let get = |feature: &str| x[slot(feature)];
    if MACRO_FEATURES.iter().fold(0.0, |sum, f| sum + get(f)) > MAX_GRAMS + MACRO_SUM_TOLERANCE_G {
        return Err(Reason::MacroSumExceeds100);
    }
    for (part, whole, reason) in PARTS {
        if get(part) > get(whole) + PART_TOLERANCE_G {
            return Err(reason);
        }
    }
    Ok(Cleaned { x, imputed })
}

/// Nutrients of a JSON object keyed by feature name (`fat_g`) or export
/// column (`fat_100g`), values as numbers or text: the body of `/predict`.
/// A feature name wins over its column when both are given.
pub fn nutrients_from_json(value: &Value) -> Result<BTreeMap<String, String>, Reason> {
    let Value::Object(object) = value else {
        return Err(Reason::NotAnObject);
    };
    let mut nutrients = BTreeMap::new();
    for column in input_columns() {
        let by_name = FEATURES.iter().find(|f| f.off_column == column).and_then(|f| object.get(f.name));
        let text = match by_name.or_else(|| object.get(column)) {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) => s.clone(),
            // Numbers, booleans, arrays: their JSON text, which rule 1 parses or refuses.
            Some(other) => other.to_string(),
        };
        nutrients.insert(column.to_string(), text);
    }
    Ok(nutrients)
}

#[cfg(feature = "testing")]
pub mod testing;
#[cfg(test)]
mod tests;
