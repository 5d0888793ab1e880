//! The cleaning policy of `lab8_policy`, vectorised: numbers are parsed in
//! Rust (a precise reason per bad value), then a batch becomes a Polars
//! DataFrame and every rule is one lazy expression, built from the policy's
//! own constants. The first rule a record breaks is its dead-letter reason.
//! A test runs the bad-input corpus through this and through
//! `lab8_policy::clean` and requires the same verdict on every case
//! (`crates/system-tests/tests/policy.rs`).

use lab8_policy::{
    imputed_value, input_columns, max_value, parse_nutrient, IMPUTED_WHEN_MISSING, KJ_PER_KCAL, MACRO_FEATURES,
    MACRO_SUM_TOLERANCE_G, MAX_GRAMS, PARTS, PART_TOLERANCE_G, SALT_PER_SODIUM, SALT_SODIUM_TOLERANCE_G,
    SALT_SODIUM_TOLERANCE_RELATIVE,
};
use lab8_protocol::features::{ENERGY_KCAL_COLUMN, SODIUM_COLUMN};
use lab8_protocol::messages::{FeatureRow, ProductRow, RawProduct};
use lab8_protocol::{Reason, FEATURES, N_FEATURES};
use polars::prelude::*;

/// The verdict on one record.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant, reason = "most verdicts are Clean; boxing would add an allocation per record")]
pub enum Verdict {
    Clean { features: FeatureRow, product: ProductRow },
    Rejected { reason: Reason },
}

#[derive(Debug, thiserror::Error)]
pub enum CleanError {
    #[error("polars: {0}")]
    Polars(#[from] PolarsError),
}

/// Cleans a batch; verdicts come back in input order.
pub fn clean_batch(products: &[RawProduct]) -> Result<Vec<Verdict>, CleanError> {
    if products.is_empty() {
        return Ok(Vec::new());
    }
    let columns = input_columns();
    let mut values: Vec<Vec<Option<f64>>> = vec![Vec::with_capacity(products.len()); columns.len()];
    // Rule 1 in Rust: the reason names the column, which an expression cannot.
    let mut parse_errors: Vec<Option<Reason>> = Vec::with_capacity(products.len());
    for product in products {
        let mut error = None;
        for (column, out) in columns.iter().zip(values.iter_mut()) {
            let value =
                parse_nutrient(product.nutrients.get(*column).map(String::as_str), column).unwrap_or_else(|reason| {
                    error.get_or_insert(reason);
                    None
                });
            out.push(value);
        }
        parse_errors.push(error);
    }
    let height = products.len();
    let mut frame_columns: Vec<Column> =
        columns.iter().zip(values).map(|(name, v)| Column::new((*name).into(), v)).collect();
    // Reasons travel through the frame as indexes into `reasons`.
    let reasons = reason_table();
    let index = |r: &Reason| reasons.iter().position(|x| x == r).map(|i| i as u32);
    let parse_errors: Vec<Option<u32>> = parse_errors.iter().map(|e| e.as_ref().and_then(index)).collect();
    frame_columns.push(Column::new("parse_error".into(), parse_errors));
    let frame = DataFrame::new(height, frame_columns)?;
    let cleaned = rules(frame.lazy(), &reasons).collect()?;

    let verdict_reasons = cleaned.column("reason")?.u32()?.clone();
    let features: Vec<Float64Chunked> =
        FEATURES.iter().map(|f| cleaned.column(f.name).and_then(|c| c.f64().cloned())).collect::<PolarsResult<_>>()?;
    let missing: Vec<(&str, BooleanChunked)> = IMPUTED_WHEN_MISSING
        .iter()
        .map(|(name, _)| Ok((*name, cleaned.column(&missing_column(name))?.bool()?.clone())))
        .collect::<PolarsResult<_>>()?;
    let mut verdicts = Vec::with_capacity(height);
    for (i, product) in products.iter().enumerate() {
        if let Some(reason) = verdict_reasons.get(i) {
            verdicts.push(Verdict::Rejected { reason: reasons[reason as usize] });
            continue;
        }
        let mut x = [0.0; N_FEATURES];
        for (slot, column) in x.iter_mut().zip(&features) {
            *slot = column.get(i).expect("accepted rows have every feature");
        }
        let imputed =
            missing.iter().filter(|(_, m)| m.get(i).unwrap_or(false)).map(|(name, _)| name.to_string()).collect();
        let version = product.version();
        verdicts.push(Verdict::Clean {
            features: FeatureRow { code: product.code.clone(), x, version: version.clone() },
            product: ProductRow::new(product, version, x, imputed),
        });
    }
    Ok(verdicts)
}

/// Every reason this kernel can give; the frame carries indexes into it.
fn reason_table() -> Vec<Reason> {
    Reason::all()
}

fn missing_column(feature: &str) -> String {
    format!("{feature}_missing")
}

/// The rules as lazy expressions; adds the feature columns and `reason`
/// (an index into [`reason_table`], null for a clean row).
fn rules(frame: LazyFrame, reasons: &[Reason]) -> LazyFrame {
    let code = |r: Reason| lit(reasons.iter().position(|x| *x == r).expect("every reason is in the table") as u32);
    let off = |name: &str| FEATURES.iter().find(|f| f.name == name).map(|f| col(f.off_column)).expect("known feature");
    // Rule 2 and 3: energy and salt from their alternatives; the others as given.
    let mut derived: Vec<Expr> = FEATURES
        .iter()
        .map(|f| match f.name {
            "energy_kj" => off(f.name).fill_null(col(ENERGY_KCAL_COLUMN) * lit(KJ_PER_KCAL)).alias(f.name),
            "salt_g" => off(f.name).fill_null(col(SODIUM_COLUMN) * lit(SALT_PER_SODIUM)).alias(f.name),
            _ => off(f.name).alias(f.name),
        })
        .collect();
    derived.extend(IMPUTED_WHEN_MISSING.iter().map(|(name, _)| off(name).is_null().alias(missing_column(name))));
    // Rule 4: impute what may be missing.
    let imputed = frame.with_columns(derived).with_columns(
        FEATURES
            .iter()
            .filter_map(|f| imputed_value(f.name).map(|v| col(f.name).fill_null(lit(v)).alias(f.name)))
            .collect::<Vec<_>>(),
    );

    let salt_sodium_disagree = {
        let salt = off("salt_g");
        let from_sodium = col(SODIUM_COLUMN) * lit(SALT_PER_SODIUM);
        let relative = salt.clone() * lit(SALT_SODIUM_TOLERANCE_RELATIVE);
        let tolerance = when(relative.clone().gt(lit(SALT_SODIUM_TOLERANCE_G)))
            .then(relative)
            .otherwise(lit(SALT_SODIUM_TOLERANCE_G));
        let differ =
            (salt.clone() - from_sodium.clone()).gt(tolerance.clone()).or((from_sodium - salt.clone()).gt(tolerance));
        salt.is_not_null().and(col(SODIUM_COLUMN).is_not_null()).and(differ)
    };
    let mut checks: Vec<(Expr, Expr)> = vec![(salt_sodium_disagree, code(Reason::SaltSodiumMismatch))];
    checks.extend(FEATURES.iter().map(|f| (col(f.name).is_null(), code(Reason::MissingRequired(f.name)))));
    checks.extend(FEATURES.iter().map(|f| (col(f.name).lt(lit(0.0)), code(Reason::NegativeValue(f.name)))));
    checks.extend(FEATURES.iter().map(|f| (col(f.name).gt(lit(max_value(f.name))), code(Reason::OutOfRange(f.name)))));
    let macro_sum = MACRO_FEATURES.iter().skip(1).fold(col(MACRO_FEATURES[0]), |sum, f| sum + col(*f));
    checks.push((macro_sum.gt(lit(MAX_GRAMS + MACRO_SUM_TOLERANCE_G)), code(Reason::MacroSumExceeds100)));
    for (part, whole, reason) in PARTS {
        checks.push((col(part).gt(col(whole) + lit(PART_TOLERANCE_G)), code(reason)));
    }

    // First broken rule wins; a parse error comes first. A null comparison
    // (missing value) is not a failure here: missing values are caught by
    // their own rule first.
    let mut checks = checks.into_iter().map(|(condition, reason)| (condition.fill_null(lit(false)), reason));
    let (first, first_reason) = checks.next().expect("more than one rule");
    let mut chain = when(col("parse_error").is_not_null()).then(col("parse_error")).when(first).then(first_reason);
    for (condition, reason) in checks {
        chain = chain.when(condition).then(reason);
    }
    imputed.with_column(chain.otherwise(lit(NULL).cast(DataType::UInt32)).alias("reason"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(changes: &[(&str, &str)]) -> RawProduct {
        let mut p = RawProduct { code: "1".into(), nutrients: lab8_policy::testing::bread(), ..Default::default() };
        for (k, v) in changes {
            p.nutrients.insert(k.to_string(), v.to_string());
        }
        p
    }

    #[test]
    fn batches_give_the_policy_verdict_per_row() {
        let mut no_fiber = product(&[]);
        no_fiber.nutrients.remove("fiber_100g");
        let batch = vec![product(&[]), product(&[("fat_100g", "x")]), no_fiber, product(&[("fat_100g", "150")])];
        let verdicts = clean_batch(&batch).unwrap();
        match &verdicts[0] {
            Verdict::Clean { features, .. } => assert_eq!(features.x, [1000.0, 3.0, 0.5, 45.0, 3.0, 7.0, 9.0, 1.2]),
            other => panic!("{other:?}"),
        }
        assert_eq!(verdicts[1], Verdict::Rejected { reason: Reason::UnparsableNumber("fat_100g") });
        match &verdicts[2] {
            Verdict::Clean { product, features } => {
                assert_eq!(product.imputed, vec!["fiber_g"]);
                assert_eq!(features.x[5], 0.0);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(verdicts[3], Verdict::Rejected { reason: Reason::OutOfRange("fat_g") });
        assert!(clean_batch(&[]).unwrap().is_empty());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn raw_product() -> impl Strategy<Value = RawProduct> {
            lab8_policy::testing::nutrients().prop_map(|nutrients| RawProduct {
                code: "p".into(),
                nutrients,
                ..Default::default()
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

            /// The vectorised kernel and the policy agree on every row.
            #[test]
            fn the_kernel_agrees_with_the_policy(batch in proptest::collection::vec(raw_product(), 1..300)) {
                let verdicts = clean_batch(&batch).unwrap();
                prop_assert_eq!(verdicts.len(), batch.len());
                for (product, verdict) in batch.iter().zip(verdicts) {
                    match (lab8_policy::clean(&product.nutrients), verdict) {
                        (Ok(expected), Verdict::Clean { features, product }) => {
                            prop_assert_eq!(expected.x, features.x);
                            prop_assert_eq!(expected.imputed, product.imputed);
                        }
                        (Err(expected), Verdict::Rejected { reason }) => prop_assert_eq!(expected, reason),
                        (expected, got) => prop_assert!(false, "policy {:?}, kernel {:?}", expected, got),
                    }
                }
            }
        }
    }
}
