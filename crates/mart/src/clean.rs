//! Cleaning rules: raw products in, feature rows or rejections out.
//!
//! Numbers are parsed in Rust (a precise reason per bad value), then a batch
//! becomes a Polars DataFrame and every rule below is one lazy expression.
//! The first rule a record breaks is its dead-letter reason.
//!
//! | order | rule | reason |
//! |---|---|---|
//! | 1 | every present value parses as a finite number (`,` accepted as decimal separator) | `unparsable_number:<column>` / `non_finite:<column>` |
//! | 2 | energy: `energy_100g` (kJ), else `energy-kcal_100g` × 4.184 | — |
//! | 3 | salt: `salt_100g`, else `sodium_100g` × 2.5; both given must agree within max(0.05 g, 10 %) | `salt_sodium_mismatch` |
//! | 4 | missing values: fiber missing → 0 (marked imputed); any other feature missing rejects | `missing_required:<feature>` |
//! | 5 | no negative value | `negative_value:<feature>` |
//! | 6 | each gram value ≤ 100 g, energy ≤ 3800 kJ | `out_of_range:<feature>` |
//! | 7 | fat + carbohydrates + proteins + fiber ≤ 100 g + [`MACRO_SUM_TOLERANCE_G`] | `macro_sum_exceeds_100` |
//! | 8 | saturated fat ≤ fat, sugars ≤ carbohydrates (+ [`PART_TOLERANCE_G`]) | `saturated_fat_exceeds_fat`, `sugars_exceed_carbohydrates` |
//! | 9 | one product per code: a later record with a known code is rejected (applied atomically at commit) | `duplicate_code` |

use lab8_protocol::features::{ENERGY_KCAL_COLUMN, SODIUM_COLUMN};
use lab8_protocol::messages::{FeatureRow, ProductRow, RawProduct};
use lab8_protocol::{FEATURES, N_FEATURES};
use polars::prelude::*;

/// Upper bound of energy per 100 g (pure fat is about 3700 kJ).
pub const MAX_ENERGY_KJ: f64 = 3800.0;
/// kJ per kcal.
pub const KJ_PER_KCAL: f64 = 4.184;
/// Salt = sodium × 2.5 (EU labelling rule).
pub const SALT_PER_SODIUM: f64 = 2.5;
/// Rounding on labels lets the macronutrients add up to a little over 100 g.
pub const MACRO_SUM_TOLERANCE_G: f64 = 3.0;
/// Rounding tolerance for a part (saturated fat, sugars) against its whole.
pub const PART_TOLERANCE_G: f64 = 0.1;

/// Feature imputed when missing, with its value.
const IMPUTED_WHEN_MISSING: &[(&str, f64)] = &[("fiber_g", 0.0)];

/// The verdict on one record.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant, reason = "most verdicts are Clean; boxing would add an allocation per record")]
pub enum Verdict {
    Clean { features: FeatureRow, product: ProductRow },
    Rejected { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum CleanError {
    #[error("polars: {0}")]
    Polars(#[from] PolarsError),
}

/// Parses a nutrient value: trims, accepts a comma as decimal separator
/// when there is no dot, refuses anything non-finite.
pub fn parse_number(text: &str) -> Result<f64, &'static str> {
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
        Ok(_) => Err("non_finite"),
        Err(_)
            if ["nan", "inf", "infinity", "-inf", "+inf", "-infinity"]
                .contains(&candidate.to_ascii_lowercase().as_str()) =>
        {
            Err("non_finite")
        }
        Err(_) => Err("unparsable_number"),
    }
}

/// Input columns, in the order they are parsed: the features' own export
/// columns followed by the two derivation sources.
fn input_columns() -> Vec<&'static str> {
    FEATURES.iter().map(|f| f.off_column).chain([ENERGY_KCAL_COLUMN, SODIUM_COLUMN]).collect()
}

/// Cleans a batch; verdicts come back in input order.
pub fn clean_batch(products: &[RawProduct]) -> Result<Vec<Verdict>, CleanError> {
    if products.is_empty() {
        return Ok(Vec::new());
    }
    let columns = input_columns();
    let mut values: Vec<Vec<Option<f64>>> = vec![Vec::with_capacity(products.len()); columns.len()];
    let mut parse_errors: Vec<Option<String>> = Vec::with_capacity(products.len());
    for product in products {
        let mut error = None;
        for (column, out) in columns.iter().zip(values.iter_mut()) {
            let value = match product.nutrients.get(*column) {
                None => None,
                Some(text) if text.trim().is_empty() => None,
                Some(text) => match parse_number(text) {
                    Ok(v) => Some(v),
                    Err(kind) => {
                        error.get_or_insert_with(|| format!("{kind}:{column}"));
                        None
                    }
                },
            };
            out.push(value);
        }
        parse_errors.push(error);
    }
    let height = products.len();
    let mut frame_columns: Vec<Column> =
        columns.iter().zip(values).map(|(name, v)| Column::new((*name).into(), v)).collect();
    frame_columns.push(Column::new("parse_error".into(), parse_errors));
    let frame = DataFrame::new(height, frame_columns)?;
    let cleaned = rules(frame.lazy()).collect()?;

    let reasons = cleaned.column("reason")?.str()?.clone();
    let features: Vec<Float64Chunked> =
        FEATURES.iter().map(|f| cleaned.column(f.name).and_then(|c| c.f64().cloned())).collect::<PolarsResult<_>>()?;
    let fiber_missing = cleaned.column("fiber_missing")?.bool()?.clone();
    let mut verdicts = Vec::with_capacity(height);
    for (i, product) in products.iter().enumerate() {
        if let Some(reason) = reasons.get(i) {
            verdicts.push(Verdict::Rejected { reason: reason.to_string() });
            continue;
        }
        let mut x = [0.0; N_FEATURES];
        for (slot, column) in x.iter_mut().zip(&features) {
            *slot = column.get(i).expect("accepted rows have every feature");
        }
        let imputed = if fiber_missing.get(i).unwrap_or(false) { vec!["fiber_g".to_string()] } else { Vec::new() };
        verdicts.push(Verdict::Clean {
            features: FeatureRow { code: product.code.clone(), x },
            product: ProductRow {
                code: product.code.clone(),
                name: product.name.clone(),
                categories: product.categories.clone(),
                nutriscore: product.nutriscore.clone(),
                x,
                imputed,
            },
        });
    }
    Ok(verdicts)
}

/// The rules as lazy expressions; adds the feature columns and `reason`
/// (null for a clean row).
fn rules(frame: LazyFrame) -> LazyFrame {
    let off = |name: &str| FEATURES.iter().find(|f| f.name == name).map(|f| col(f.off_column)).expect("known feature");
    let derived = frame.with_columns([
        off("energy_kj").fill_null(col(ENERGY_KCAL_COLUMN) * lit(KJ_PER_KCAL)).alias("energy_kj"),
        off("salt_g").fill_null(col(SODIUM_COLUMN) * lit(SALT_PER_SODIUM)).alias("salt_g"),
        off("fiber_g").is_null().alias("fiber_missing"),
        off("fat_g").alias("fat_g"),
        off("saturated_fat_g").alias("saturated_fat_g"),
        off("carbohydrates_g").alias("carbohydrates_g"),
        off("sugars_g").alias("sugars_g"),
        off("proteins_g").alias("proteins_g"),
    ]);
    let imputed = derived.with_columns(
        IMPUTED_WHEN_MISSING
            .iter()
            .map(|(name, value)| off(name).fill_null(lit(*value)).alias(*name))
            .collect::<Vec<_>>(),
    );

    let salt_sodium_disagree = {
        let salt = off("salt_g");
        let from_sodium = col(SODIUM_COLUMN) * lit(SALT_PER_SODIUM);
        let relative = salt.clone() * lit(0.1);
        let tolerance = when(relative.clone().gt(lit(0.05))).then(relative).otherwise(lit(0.05));
        let differ =
            (salt.clone() - from_sodium.clone()).gt(tolerance.clone()).or((from_sodium - salt.clone()).gt(tolerance));
        salt.is_not_null().and(col(SODIUM_COLUMN).is_not_null()).and(differ)
    };
    let mut checks: Vec<(Expr, String)> = vec![(col("parse_error").is_not_null(), String::new())];
    checks.push((salt_sodium_disagree, "salt_sodium_mismatch".into()));
    checks.extend(FEATURES.iter().map(|f| (col(f.name).is_null(), format!("missing_required:{}", f.name))));
    checks.extend(FEATURES.iter().map(|f| (col(f.name).lt(lit(0.0)), format!("negative_value:{}", f.name))));
    checks.extend(FEATURES.iter().map(|f| {
        let max = if f.name == "energy_kj" { MAX_ENERGY_KJ } else { 100.0 };
        (col(f.name).gt(lit(max)), format!("out_of_range:{}", f.name))
    }));
    let macro_sum = col("fat_g") + col("carbohydrates_g") + col("proteins_g") + col("fiber_g");
    checks.push((macro_sum.gt(lit(100.0 + MACRO_SUM_TOLERANCE_G)), "macro_sum_exceeds_100".into()));
    checks.push((col("saturated_fat_g").gt(col("fat_g") + lit(PART_TOLERANCE_G)), "saturated_fat_exceeds_fat".into()));
    checks.push((
        col("sugars_g").gt(col("carbohydrates_g") + lit(PART_TOLERANCE_G)),
        "sugars_exceed_carbohydrates".into(),
    ));

    // First broken rule wins. A null comparison (missing value) is not a
    // failure here: missing values are caught by their own rule first.
    let mut checks = checks.into_iter().map(|(condition, reason)| (condition.fill_null(lit(false)), reason));
    let (parse_failed, _) = checks.next().expect("the parse rule");
    let (second, second_reason) = checks.next().expect("more than one rule");
    let mut chain = when(parse_failed).then(col("parse_error")).when(second).then(lit(second_reason));
    for (condition, reason) in checks {
        chain = chain.when(condition).then(lit(reason));
    }
    imputed.with_column(chain.otherwise(lit(NULL).cast(DataType::String)).alias("reason"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plausible wholemeal bread.
    fn bread() -> RawProduct {
        let mut p = RawProduct { code: "1".into(), name: Some("Bread".into()), ..Default::default() };
        for (k, v) in [
            ("energy_100g", "1000"),
            ("fat_100g", "3"),
            ("saturated-fat_100g", "0.5"),
            ("carbohydrates_100g", "45"),
            ("sugars_100g", "3"),
            ("fiber_100g", "7"),
            ("proteins_100g", "9"),
            ("salt_100g", "1.2"),
        ] {
            p.nutrients.insert(k.into(), v.into());
        }
        p
    }

    fn with(changes: &[(&str, Option<&str>)]) -> RawProduct {
        let mut p = bread();
        for (k, v) in changes {
            match v {
                Some(v) => p.nutrients.insert((*k).into(), (*v).into()),
                None => p.nutrients.remove(*k),
            };
        }
        p
    }

    fn verdict(p: RawProduct) -> Verdict {
        clean_batch(&[p]).unwrap().remove(0)
    }

    fn reason(p: RawProduct) -> String {
        match verdict(p) {
            Verdict::Rejected { reason } => reason,
            Verdict::Clean { .. } => "clean".into(),
        }
    }

    fn features(p: RawProduct) -> [f64; N_FEATURES] {
        match verdict(p) {
            Verdict::Clean { features, .. } => features.x,
            Verdict::Rejected { reason } => panic!("rejected: {reason}"),
        }
    }

    #[test]
    fn a_plausible_product_passes_unchanged() {
        assert_eq!(features(bread()), [1000.0, 3.0, 0.5, 45.0, 3.0, 7.0, 9.0, 1.2]);
    }

    #[test]
    fn numbers_parse_with_comma_and_spaces_but_not_garbage() {
        assert_eq!(features(with(&[("fat_100g", Some(" 3,5 "))]))[1], 3.5);
        assert_eq!(reason(with(&[("fat_100g", Some("abc"))])), "unparsable_number:fat_100g");
        assert_eq!(reason(with(&[("fat_100g", Some("1,000,5"))])), "unparsable_number:fat_100g");
        assert_eq!(reason(with(&[("fat_100g", Some("NaN"))])), "non_finite:fat_100g");
        assert_eq!(reason(with(&[("sugars_100g", Some("1e999"))])), "non_finite:sugars_100g");
    }

    #[test]
    fn energy_in_kcal_is_converted() {
        let x = features(with(&[("energy_100g", None), ("energy-kcal_100g", Some("250"))]));
        assert!((x[0] - 250.0 * KJ_PER_KCAL).abs() < 1e-9);
        assert_eq!(reason(with(&[("energy_100g", Some("3801"))])), "out_of_range:energy_kj");
        assert_eq!(features(with(&[("energy_100g", Some("3800"))]))[0], 3800.0);
    }

    #[test]
    fn salt_comes_from_sodium_and_must_agree_with_it() {
        let x = features(with(&[("salt_100g", None), ("sodium_100g", Some("0.4"))]));
        assert!((x[7] - 1.0).abs() < 1e-9);
        assert_eq!(features(with(&[("sodium_100g", Some("0.48"))]))[7], 1.2);
        assert_eq!(reason(with(&[("sodium_100g", Some("2"))])), "salt_sodium_mismatch");
    }

    #[test]
    fn missing_values_follow_the_policy() {
        let x = features(with(&[("fiber_100g", None)]));
        assert_eq!(x[5], 0.0);
        match verdict(with(&[("fiber_100g", None)])) {
            Verdict::Clean { product, .. } => assert_eq!(product.imputed, vec!["fiber_g"]),
            other => panic!("{other:?}"),
        }
        assert_eq!(reason(with(&[("fat_100g", None)])), "missing_required:fat_g");
        assert_eq!(reason(with(&[("energy_100g", None)])), "missing_required:energy_kj");
        assert_eq!(reason(with(&[("salt_100g", None)])), "missing_required:salt_g");
    }

    #[test]
    fn physical_bounds() {
        assert_eq!(reason(with(&[("proteins_100g", Some("-1"))])), "negative_value:proteins_g");
        assert_eq!(reason(with(&[("carbohydrates_100g", Some("101"))])), "out_of_range:carbohydrates_g");
        assert_eq!(
            reason(with(&[("fat_100g", Some("40")), ("carbohydrates_100g", Some("60")), ("proteins_100g", Some("9"))])),
            "macro_sum_exceeds_100"
        );
        assert_eq!(reason(with(&[("saturated-fat_100g", Some("3.5"))])), "saturated_fat_exceeds_fat");
        assert_eq!(reason(with(&[("sugars_100g", Some("46"))])), "sugars_exceed_carbohydrates");
        // Within tolerance: a label's rounding passes.
        assert_eq!(reason(with(&[("saturated-fat_100g", Some("3.05"))])), "clean");
        assert_eq!(
            reason(with(&[("fat_100g", Some("40")), ("carbohydrates_100g", Some("50")), ("proteins_100g", Some("5"))])),
            "clean"
        );
    }

    #[test]
    fn a_bad_record_does_not_spoil_its_batch() {
        let batch = vec![bread(), with(&[("fat_100g", Some("x"))]), bread()];
        let verdicts = clean_batch(&batch).unwrap();
        assert!(matches!(verdicts[0], Verdict::Clean { .. }));
        assert!(matches!(verdicts[1], Verdict::Rejected { .. }));
        assert!(matches!(verdicts[2], Verdict::Clean { .. }));
        assert!(clean_batch(&[]).unwrap().is_empty());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Nutrient text as found in the wild: numbers in several spellings and garbage.
        fn nutrient_text() -> impl Strategy<Value = String> {
            prop_oneof![
                (-10.0f64..4000.0).prop_map(|v| v.to_string()),
                (0.0f64..100.0).prop_map(|v| format!("{v:.2}").replace('.', ",")),
                (0.0f64..100.0).prop_map(|v| format!("  {v}  ")),
                Just("NaN".to_string()),
                Just("inf".to_string()),
                Just("1e400".to_string()),
                Just(String::new()),
                "[ -~]{0,12}",
                any::<String>(),
            ]
        }

        fn product() -> impl Strategy<Value = RawProduct> {
            let columns: Vec<&'static str> = input_columns();
            proptest::collection::vec(proptest::option::of(nutrient_text()), columns.len()).prop_map(move |values| {
                let mut p = RawProduct { code: "p".into(), ..Default::default() };
                for (column, value) in columns.iter().zip(values) {
                    if let Some(v) = value {
                        p.nutrients.insert((*column).to_string(), v);
                    }
                }
                p
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            /// Whatever comes in, cleaning answers for every record, and every
            /// clean row satisfies every rule.
            #[test]
            fn clean_rows_obey_every_rule(batch in proptest::collection::vec(product(), 1..40)) {
                let verdicts = clean_batch(&batch).unwrap();
                prop_assert_eq!(verdicts.len(), batch.len());
                for verdict in verdicts {
                    match verdict {
                        Verdict::Clean { features, .. } => {
                            let x = features.x;
                            prop_assert!(x.iter().all(|v| v.is_finite() && *v >= 0.0));
                            prop_assert!(x[0] <= MAX_ENERGY_KJ);
                            prop_assert!(x[1..].iter().all(|v| *v <= 100.0));
                            prop_assert!(x[1] + x[3] + x[5] + x[6] <= 100.0 + MACRO_SUM_TOLERANCE_G);
                            prop_assert!(x[2] <= x[1] + PART_TOLERANCE_G);
                            prop_assert!(x[4] <= x[3] + PART_TOLERANCE_G);
                        }
                        Verdict::Rejected { reason } => {
                            let kind = reason.split(':').next().unwrap();
                            prop_assert!([
                                "unparsable_number", "non_finite", "salt_sodium_mismatch", "missing_required",
                                "negative_value", "out_of_range", "macro_sum_exceeds_100",
                                "saturated_fat_exceeds_fat", "sugars_exceed_carbohydrates",
                            ].contains(&kind), "undocumented reason {}", reason);
                        }
                    }
                }
            }

            #[test]
            fn parse_number_accepts_only_finite_numbers(text in any::<String>()) {
                if let Ok(v) = parse_number(&text) {
                    prop_assert!(v.is_finite());
                }
            }
        }
    }
}
