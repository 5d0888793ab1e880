//! Test support (feature `testing`): a valid product, and generators of
//! nutrients as found in the wild, plausible most of the time so that clean
//! rows are common.

use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::input_columns;

/// A plausible wholemeal bread.
pub fn bread() -> BTreeMap<String, String> {
    [
        ("energy_100g", "1000"),
        ("fat_100g", "3"),
        ("saturated-fat_100g", "0.5"),
        ("carbohydrates_100g", "45"),
        ("sugars_100g", "3"),
        ("fiber_100g", "7"),
        ("proteins_100g", "9"),
        ("salt_100g", "1.2"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Nutrient text as found in the wild: mostly plausible numbers in
/// several spellings, sometimes garbage.
pub fn nutrient_text(plausible_max: f64) -> impl Strategy<Value = String> {
    prop_oneof![
        40 => (0.0..plausible_max).prop_map(|v| format!("{v:.2}")),
        5 => (0.0..plausible_max).prop_map(|v| format!("{v:.2}").replace('.', ",")),
        5 => (0.0..plausible_max).prop_map(|v| format!("  {v}  ")),
        1 => (-10.0f64..4000.0).prop_map(|v| v.to_string()),
        1 => prop_oneof![Just("NaN".to_string()), Just("inf".to_string()), Just("1e400".to_string()), Just(String::new())],
        1 => "[ -~]{0,12}",
        1 => any::<String>(),
    ]
}

/// A product: each column present most of the time with a plausible value.
pub fn nutrients() -> impl Strategy<Value = BTreeMap<String, String>> {
    let columns = input_columns();
    let strategies: Vec<_> = columns
        .iter()
        .map(|c| {
            // Small parts so that the sum and part rules pass most of the time.
            let max = match *c {
                "energy_100g" => 3000.0,
                "energy-kcal_100g" => 700.0,
                "sodium_100g" | "salt_100g" | "saturated-fat_100g" | "sugars_100g" => 1.0,
                _ => 25.0,
            };
            // Sodium mostly absent: given with salt, it must agree with it.
            let present = match *c {
                "sodium_100g" => 0.1,
                "energy-kcal_100g" => 0.5,
                _ => 0.97,
            };
            proptest::option::weighted(present, nutrient_text(max))
        })
        .collect();
    strategies
        .prop_map(move |values| columns.iter().zip(values).filter_map(|(c, v)| v.map(|v| (c.to_string(), v))).collect())
}
