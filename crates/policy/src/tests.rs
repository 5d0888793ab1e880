use super::*;

use crate::testing::bread;

fn with(changes: &[(&str, Option<&str>)]) -> BTreeMap<String, String> {
    let mut p = bread();
    for (k, v) in changes {
        match v {
            Some(v) => p.insert((*k).into(), (*v).into()),
            None => p.remove(*k),
        };
    }
    p
}

fn reason(p: BTreeMap<String, String>) -> String {
    match clean(&p) {
        Err(reason) => reason.to_string(),
        Ok(_) => "clean".into(),
    }
}

fn features(p: BTreeMap<String, String>) -> [f64; N_FEATURES] {
    clean(&p).unwrap_or_else(|r| panic!("rejected: {r}")).x
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
    let cleaned = clean(&with(&[("fiber_100g", None)])).unwrap();
    assert_eq!(cleaned.x[5], 0.0);
    assert_eq!(cleaned.imputed, vec!["fiber_g"]);
    assert!(clean(&bread()).unwrap().imputed.is_empty());
    assert_eq!(reason(with(&[("fat_100g", None)])), "missing_required:fat_g");
    assert_eq!(reason(with(&[("fat_100g", Some("  "))])), "missing_required:fat_g");
    assert_eq!(reason(with(&[("energy_100g", None)])), "missing_required:energy_kj");
    assert_eq!(reason(with(&[("salt_100g", None)])), "missing_required:salt_g");
}

#[test]
fn physical_bounds() {
    assert_eq!(reason(with(&[("proteins_100g", Some("-1"))])), "negative_value:proteins_g");
    assert_eq!(reason(with(&[("carbohydrates_100g", Some("101"))])), "out_of_range:carbohydrates_g");
    assert_eq!(reason(with(&[("fat_100g", Some("150"))])), "out_of_range:fat_g");
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
fn json_bodies_by_feature_name_or_column_numbers_or_text() {
    let by_name = serde_json::json!({"energy_kj": 1000, "fat_g": 3, "saturated_fat_g": 1, "carbohydrates_g": 40, "sugars_g": 2, "proteins_g": 9, "salt_g": 1.1});
    let cleaned = clean(&nutrients_from_json(&by_name).unwrap()).unwrap();
    assert_eq!((cleaned.x[5], cleaned.x[7]), (0.0, 1.1));
    assert_eq!(cleaned.imputed, vec!["fiber_g"]);
    let by_column = serde_json::json!({"energy_100g": "1000", "fat_100g": "3,0", "saturated-fat_100g": 1, "carbohydrates_100g": 40, "sugars_100g": 2, "fiber_100g": 4, "proteins_100g": 9, "salt_100g": 1.1});
    assert_eq!(clean(&nutrients_from_json(&by_column).unwrap()).unwrap().x[5], 4.0);
    assert_eq!(nutrients_from_json(&serde_json::json!([1])), Err(Reason::NotAnObject));
    let mut too_fat = by_name.clone();
    too_fat["fat_g"] = serde_json::json!(150);
    assert_eq!(clean(&nutrients_from_json(&too_fat).unwrap()), Err(Reason::OutOfRange("fat_g")));
    let mut boolean = by_name;
    boolean["fat_g"] = serde_json::json!(true);
    assert_eq!(clean(&nutrients_from_json(&boolean).unwrap()), Err(Reason::UnparsableNumber("fat_100g")));
}

mod properties {
    use super::*;
    use crate::testing::nutrients;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Whatever comes in, the policy answers; every clean row obeys every
        /// rule; and the generator is good enough to produce clean rows.
        #[test]
        fn clean_rows_obey_every_rule(batch in proptest::collection::vec(nutrients(), 200)) {
            let mut clean_rows = 0;
            for product in &batch {
                match clean(product) {
                    Ok(Cleaned { x, .. }) => {
                        clean_rows += 1;
                        prop_assert!(x.iter().all(|v| v.is_finite() && *v >= 0.0));
                        prop_assert!(x[0] <= MAX_ENERGY_KJ);
                        prop_assert!(x[1..].iter().all(|v| *v <= MAX_GRAMS));
                        prop_assert!(x[1] + x[3] + x[6] + x[5] <= MAX_GRAMS + MACRO_SUM_TOLERANCE_G);
                        prop_assert!(x[2] <= x[1] + PART_TOLERANCE_G);
                        prop_assert!(x[4] <= x[3] + PART_TOLERANCE_G);
                    }
                    Err(reason) => prop_assert!(Reason::all().contains(&reason), "undocumented reason {}", reason),
                }
            }
            // A generator that never makes a clean row would check nothing.
            prop_assert!(clean_rows >= batch.len() / 4, "only {} clean rows of {}", clean_rows, batch.len());
        }

        #[test]
        fn parse_number_accepts_only_finite_numbers(text in any::<String>()) {
            if let Ok(v) = parse_number(&text) {
                prop_assert!(v.is_finite());
            }
        }
    }
}
