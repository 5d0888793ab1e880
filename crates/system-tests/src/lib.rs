//! Whole-system tests of lab8: the source, the mart and the model together
//! against a real redis-server (`tests/`), and the helpers they share.

use std::path::PathBuf;

pub mod harness;

/// The repository root.
pub fn root() -> PathBuf {
    lab8_bus::testing::repo_root()
}

/// The bundled OpenFoodFacts sample's files, sorted.
pub fn sample_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("data/openfoodfacts"))
        .expect("data/openfoodfacts")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "tsv"))
        .collect();
    files.sort();
    files
}

/// The sample repeated `repeat` times with prefixed codes (`r0-…`, `r1-…`),
/// as one TSV in `dir`: `repeat` × 12,945 distinct products.
pub fn repeated_sample(dir: &std::path::Path, repeat: usize) -> PathBuf {
    let out = dir.join("repeated.tsv");
    let mut text = String::new();
    let files = sample_files();
    for r in 0..repeat {
        for (i, file) in files.iter().enumerate() {
            let content = std::fs::read_to_string(file).unwrap();
            for (n, line) in content.lines().enumerate() {
                if n == 0 {
                    if r == 0 && i == 0 {
                        text.push_str(line);
                        text.push('\n');
                    }
                    continue;
                }
                text.push_str(&format!("r{r}-{line}\n"));
            }
        }
    }
    std::fs::write(&out, text).unwrap();
    out
}

/// A service binary of the workspace build (`lab8-mart`, …): integration
/// tests run from `<target>/<profile>/deps/`, the binaries sit one level up.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let path = exe.parent().and_then(|deps| deps.parent()).expect("target dir").join(name);
    assert!(path.exists(), "{} missing: build the workspace first (make build)", path.display());
    path
}

/// A valid product's nutrients (a wholemeal bread), as JSON object fields.
pub const BREAD: &str = r#""energy_100g":"1000","fat_100g":"3","saturated-fat_100g":"0.5","carbohydrates_100g":"45","sugars_100g":"3","fiber_100g":"7","proteins_100g":"9","salt_100g":"1.2""#;

/// What should become of a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Fate {
    /// Dead letter at the source, found by its input location (`file:line`).
    Source(&'static str),
    /// Dead letter at the mart, found by its code.
    Mart(&'static str),
    /// Accepted into the mart (a documented rule made it valid).
    Accepted,
}

pub fn bread_with(code: &str, change: &str) -> String {
    // Later keys win in serde_json: `change` overrides the bread's value.
    format!(
        r#"{{"code":"{code}","product_name":"case {code}",{BREAD}{}{change}}}"#,
        if change.is_empty() { "" } else { "," }
    )
}

/// The JSONL corpus: (line, expected fate, code when the fate is in the mart).
pub fn jsonl_corpus() -> Vec<(Vec<u8>, Fate, String)> {
    let mut cases: Vec<(Vec<u8>, Fate, String)> = Vec::new();
    let mart = |code: &str, change: &str, fate: Fate| (bread_with(code, change).into_bytes(), fate, code.to_string());
    let long_code = "9".repeat(100);
    let huge_name = "x".repeat(20_000);
    let source_cases: Vec<(Vec<u8>, &'static str)> = vec![
        (b"this is not json".to_vec(), "malformed_json"),
        (b"[1, 2, 3]".to_vec(), "not_an_object"),
        (b"\"just a string\"".to_vec(), "not_an_object"),
        (br#"{"product_name":"no code","fat_100g":1}"#.to_vec(), "missing_code"),
        (br#"{"code":"","fat_100g":1}"#.to_vec(), "missing_code"),
        (br#"{"code":"12 34","fat_100g":1}"#.to_vec(), "invalid_code"),
        (format!(r#"{{"code":"{long_code}"}}"#).into_bytes(), "invalid_code"),
        (br#"{"code":{"nested":1}}"#.to_vec(), "wrong_type:code"),
        (br#"{"code":"w1","product_name":42}"#.to_vec(), "wrong_type:text"),
        (format!(r#"{{"code":"huge","product_name":"{huge_name}"}}"#).into_bytes(), "field_too_large"),
        (b"{\"code\":\"u1\",\"product_name\":\"\xff\xfe\"}".to_vec(), "invalid_utf8"),
        (br#"{"code":"trunc","fat_100g":"#.to_vec(), "malformed_json"),
        (br#"{"code":"big","fat_100g":1e999}"#.to_vec(), "malformed_json"),
        (br#"{"code":"n1","nutrients":[1,2]}"#.to_vec(), "wrong_type:nutrients"),
    ];
    for (line, reason) in source_cases {
        cases.push((line, Fate::Source(reason), String::new()));
    }
    cases.extend([
        mart("m-abc", r#""fat_100g":"abc""#, Fate::Mart("unparsable_number:fat_100g")),
        mart("m-bool", r#""fat_100g":true"#, Fate::Mart("unparsable_number:fat_100g")),
        mart("m-array", r#""fat_100g":[1]"#, Fate::Mart("unparsable_number:fat_100g")),
        mart("m-nan", r#""sugars_100g":"NaN""#, Fate::Mart("non_finite:sugars_100g")),
        mart("m-inf", r#""salt_100g":"Infinity""#, Fate::Mart("non_finite:salt_100g")),
        mart("m-overflow", r#""proteins_100g":"1e999""#, Fate::Mart("non_finite:proteins_100g")),
        mart("m-negative", r#""proteins_100g":-5"#, Fate::Mart("negative_value:proteins_g")),
        mart("m-absurd", r#""fat_100g":250"#, Fate::Mart("out_of_range:fat_g")),
        mart("m-energy", r#""energy_100g":9000"#, Fate::Mart("out_of_range:energy_kj")),
        mart(
            "m-macros",
            r#""fat_100g":50,"carbohydrates_100g":70,"saturated-fat_100g":1"#,
            Fate::Mart("macro_sum_exceeds_100"),
        ),
        mart("m-satfat", r#""saturated-fat_100g":5"#, Fate::Mart("saturated_fat_exceeds_fat")),
        mart("m-sugars", r#""sugars_100g":50"#, Fate::Mart("sugars_exceed_carbohydrates")),
        mart("m-sodium", r#""sodium_100g":2"#, Fate::Mart("salt_sodium_mismatch")),
        mart("m-noenergy", r#""energy_100g":null"#, Fate::Mart("missing_required:energy_kj")),
        mart("m-emptyfat", r#""fat_100g":"""#, Fate::Mart("missing_required:fat_g")),
        mart("m-innerspace", r#""fat_100g":"3 5""#, Fate::Mart("unparsable_number:fat_100g")),
        mart("m-twocommas", r#""fat_100g":"1,2,3""#, Fate::Mart("unparsable_number:fat_100g")),
        // Accepted by documented rules.
        mart("a-comma", r#""fat_100g":"3,5""#, Fate::Accepted),
        mart("a-spaces", r#""fat_100g":"  3.5  ""#, Fate::Accepted),
        mart("a-number", r#""fat_100g":3.5"#, Fate::Accepted),
        mart("a-kcal", r#""energy_100g":null,"energy-kcal_100g":"250""#, Fate::Accepted),
        mart("a-sodium", r#""salt_100g":null,"sodium_100g":"0.48""#, Fate::Accepted),
        mart("a-nofiber", r#""fiber_100g":null"#, Fate::Accepted),
        mart("a-unknown-field", r#""made_up_100g":"zzz""#, Fate::Accepted),
    ]);
    // A code sent as a JSON number is read as its digits.
    cases.push((
        format!(r#"{{"code":4006040012345,"product_name":"numeric code",{BREAD}}}"#).into_bytes(),
        Fate::Accepted,
        "4006040012345".into(),
    ));
    // A code sent twice: the same record is a duplicate (nothing changes);
    // a different one without a time is newer by arrival (it replaces);
    // with `last_modified_t`, the newer time wins whatever the order.
    cases.push((bread_with("dup", r#""fat_100g":"4""#).into_bytes(), Fate::Accepted, "dup".into()));
    cases.push((bread_with("dup", r#""fat_100g":"4""#).into_bytes(), Fate::Accepted, "dup".into()));
    cases.push((bread_with("upd", r#""fat_100g":"4""#).into_bytes(), Fate::Accepted, "upd".into()));
    cases.push((bread_with("upd", r#""fat_100g":"40""#).into_bytes(), Fate::Accepted, "upd".into()));
    cases.push((
        bread_with("old", r#""fat_100g":"4","last_modified_t":20"#).into_bytes(),
        Fate::Accepted,
        "old".into(),
    ));
    cases.push((
        bread_with("old", r#""fat_100g":"40","last_modified_t":10"#).into_bytes(),
        Fate::Accepted,
        "old".into(),
    ));
    cases
}
