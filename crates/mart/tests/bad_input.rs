//! A corpus of malformed records pushed through the source and the mart
//! against a real redis-server: each ends in the dead-letter stream with its
//! reason, or is accepted by a documented rule; valid neighbours still pass.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use lab8_mart::{service, MartConfig};
use lab8_protocol::bus::{scan_hash, ConsumerOptions};
use lab8_protocol::messages::ProductRow;
use lab8_protocol::service::Ops;
use lab8_protocol::testing::{dead_letters, RedisServer};
use lab8_source::input::ReadOptions;
use lab8_source::Loader;

/// A valid product's nutrients (a wholemeal bread), as JSON object fields.
const BREAD: &str = r#""energy_100g":"1000","fat_100g":"3","saturated-fat_100g":"0.5","carbohydrates_100g":"45","sugars_100g":"3","fiber_100g":"7","proteins_100g":"9","salt_100g":"1.2""#;

/// What should become of a record.
#[derive(Debug, Clone, PartialEq)]
enum Fate {
    /// Dead letter at the source, found by its input location (`file:line`).
    Source(&'static str),
    /// Dead letter at the mart, found by its code.
    Mart(&'static str),
    /// Accepted into the mart (a documented rule made it valid).
    Accepted,
}

fn bread_with(code: &str, change: &str) -> String {
    // Later keys win in serde_json: `change` overrides the bread's value.
    format!(
        r#"{{"code":"{code}","product_name":"case {code}",{BREAD}{}{change}}}"#,
        if change.is_empty() { "" } else { "," }
    )
}

/// The JSONL corpus: (line, expected fate, code when the fate is in the mart).
fn jsonl_corpus() -> Vec<(Vec<u8>, Fate, String)> {
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
        mart("a-numeric-code", "", Fate::Accepted),
    ]);
    // Duplicate code with conflicting values: the first record wins.
    cases.push((bread_with("dup", r#""fat_100g":"4""#).into_bytes(), Fate::Accepted, "dup".into()));
    cases.push((bread_with("dup", r#""fat_100g":"40""#).into_bytes(), Fate::Accepted, "dup".into()));
    cases
}

fn write(path: &PathBuf, bytes: &[u8]) {
    std::fs::File::create(path).unwrap().write_all(bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_record_is_a_dead_letter_with_its_reason_or_documented() {
    let redis = RedisServer::start();
    let bus = redis.bus("bad:").await;
    let keys = bus.keys().clone();
    let dir = tempfile::tempdir().unwrap();

    // JSONL: each case between two valid neighbours.
    let mut jsonl = Vec::new();
    let mut expected: Vec<(String, Fate, String)> = Vec::new(); // (location, fate, code)
    let mut line = 0;
    let mut neighbours = 0;
    for (i, (record, fate, code)) in jsonl_corpus().into_iter().enumerate() {
        jsonl.extend_from_slice(bread_with(&format!("ok-{i}"), "").as_bytes());
        jsonl.push(b'\n');
        line += 1;
        neighbours += 1;
        jsonl.extend_from_slice(&record);
        jsonl.push(b'\n');
        line += 1;
        expected.push((format!("corpus.jsonl:{line}"), fate, code));
    }
    write(&dir.path().join("corpus.jsonl"), &jsonl);

    // TSV (official layout, no quoting) with broken rows, and a CSV.
    let header = "code\tproduct_name\tenergy_100g\tfat_100g\tsaturated-fat_100g\tcarbohydrates_100g\tsugars_100g\tfiber_100g\tproteins_100g\tsalt_100g\n";
    let mut tsv = header.as_bytes().to_vec();
    tsv.extend_from_slice(b"t-ok\tBread \"quoted\"\t1000\t3\t0.5\t45\t3\t7\t9\t1.2\n");
    tsv.extend_from_slice(b"t-short\tBread\t1000\t3\n");
    tsv.extend_from_slice(b"t-long\tBread\t1000\t3\t0.5\t45\t3\t7\t9\t1.2\textra\n");
    tsv.extend_from_slice(b"t-utf8\tBr\xc3\x28ad\t1000\t3\t0.5\t45\t3\t7\t9\t1.2\n");
    tsv.extend_from_slice(b"\tNo code\t1000\t3\t0.5\t45\t3\t7\t9\t1.2\n");
    tsv.extend_from_slice(b"t-ok2\tBread\t1000\t3\t0.5\t45\t3\t7\t9\t1.2\n");
    write(&dir.path().join("rows.tsv"), &tsv);
    expected.push(("rows.tsv:2".into(), Fate::Accepted, "t-ok".into()));
    expected.push(("rows.tsv:3".into(), Fate::Source("column_count"), String::new()));
    expected.push(("rows.tsv:4".into(), Fate::Source("column_count"), String::new()));
    expected.push(("rows.tsv:5".into(), Fate::Source("invalid_utf8"), String::new()));
    expected.push(("rows.tsv:6".into(), Fate::Source("missing_code"), String::new()));
    expected.push(("rows.tsv:7".into(), Fate::Accepted, "t-ok2".into()));
    let csv = "code,product_name,energy_100g,fat_100g,saturated-fat_100g,carbohydrates_100g,sugars_100g,fiber_100g,proteins_100g,salt_100g\n\
               c-comma,\"Choc, dark\",1000,\"3,5\",0.5,45,3,7,9,1.2\n";
    write(&dir.path().join("rows.csv"), csv.as_bytes());
    expected.push(("rows.csv:2".into(), Fate::Accepted, "c-comma".into()));

    // A gzip'd TSV cut in the middle: the rows before the cut are kept.
    let mut body = header.to_string();
    for i in 0..3000 {
        body.push_str(&format!(
            "gz-{i}\tBread number {i} with a name long enough to fill the stream\t1000\t3\t0.5\t45\t3\t7\t9\t1.2\n"
        ));
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    write(&dir.path().join("cut.tsv.gz"), &gz[..gz.len() / 2]);

    let files: Vec<PathBuf> =
        ["corpus.jsonl", "rows.tsv", "rows.csv", "cut.tsv.gz"].iter().map(|f| dir.path().join(f)).collect();
    let mut loader = Loader::new(&bus);
    let summary = loader.load_files(&files, &ReadOptions::default(), 100, false).await.unwrap();
    assert_eq!(summary.duplicates, 1, "the second `dup` record is a duplicate");
    assert_eq!(summary.rejected.get("truncated_input"), Some(&1), "{summary:?}");

    // Records written straight to the raw stream, bypassing the source.
    let mut conn = bus.conn.clone();
    let raw = keys.raw_stream();
    let _: String = redis::cmd("XADD")
        .arg(&raw)
        .arg("*")
        .arg("other")
        .arg("no payload field")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: String =
        redis::cmd("XADD").arg(&raw).arg("*").arg("p").arg("{not json").query_async(&mut conn).await.unwrap();
    let _: String =
        redis::cmd("XADD").arg(&raw).arg("*").arg("p").arg(r#"{"code":"  "}"#).query_async(&mut conn).await.unwrap();
    let direct_dup = format!(r#"{{"code":"t-ok","nutrients":{{{}}}}}"#, BREAD.replace("\"1000\"", "\"1200\""));
    let _: String =
        redis::cmd("XADD").arg(&raw).arg("*").arg("p").arg(&direct_dup).query_async(&mut conn).await.unwrap();

    let config = MartConfig {
        consumer: "t".into(),
        consumer_options: ConsumerOptions { batch: 50, ..Default::default() },
        profile_interval: std::time::Duration::from_secs(1),
        trim_acknowledged: false,
    };
    service::drain(&bus, &config, &Ops::default()).await.expect("the mart keeps running through bad input");

    let letters = dead_letters(&bus).await;
    let products: BTreeMap<String, ProductRow> = scan_hash(&mut conn, &keys.mart_products())
        .await
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, serde_json::from_str(&v).unwrap()))
        .collect();

    let mut kinds = std::collections::BTreeSet::new();
    for (location, fate, code) in &expected {
        match fate {
            Fate::Source(reason) => {
                let letter = letters
                    .iter()
                    .find(|l| l["entry"] == *location)
                    .unwrap_or_else(|| panic!("no dead letter for {location}"));
                assert_eq!((letter["stage"].as_str(), letter["reason"].as_str()), ("source", *reason), "{location}");
                kinds.insert(format!("source:{reason}"));
            }
            Fate::Mart(reason) => {
                let letter = letters
                    .iter()
                    .find(|l| l["code"] == *code && l["stage"] == "mart")
                    .unwrap_or_else(|| panic!("no dead letter for {code}"));
                assert_eq!(letter["reason"], *reason, "{code}");
                assert!(!products.contains_key(code.as_str()), "{code} must not be in the mart");
                kinds.insert(format!("mart:{reason}"));
            }
            Fate::Accepted => {
                assert!(products.contains_key(code.as_str()), "{code} should be accepted ({location})");
                kinds.insert(format!("accepted:{code}"));
            }
        }
    }
    // The documented rules, checked on their values.
    assert_eq!(products["a-comma"].x[1], 3.5);
    assert_eq!(products["c-comma"].x[1], 3.5);
    assert!((products["a-kcal"].x[0] - 250.0 * 4.184).abs() < 1e-9);
    assert!((products["a-sodium"].x[7] - 1.2).abs() < 1e-9);
    assert_eq!(products["a-nofiber"].imputed, vec!["fiber_g".to_string()]);
    assert_eq!(products["dup"].x[1], 4.0, "first record of a code wins");
    assert_eq!(products["t-ok"].x[0], 1000.0, "a later direct write of a known code does not replace it");
    assert_eq!(products["t-ok"].name.as_deref(), Some("Bread \"quoted\""));
    // Straight-to-stream garbage.
    let mart_reasons: Vec<&str> =
        letters.iter().filter(|l| l["stage"] == "mart").map(|l| l["reason"].as_str()).collect();
    for reason in ["missing_payload", "malformed_json", "missing_code", "duplicate_code"] {
        assert!(mart_reasons.contains(&reason), "{reason} missing from {mart_reasons:?}");
        kinds.insert(format!("direct:{reason}"));
    }
    // Every valid neighbour passed, and the rows before the gzip cut.
    for i in 0..jsonl_corpus().len() {
        assert!(products.contains_key(&format!("ok-{i}")), "neighbour ok-{i} lost");
    }
    let gz_rows = products.keys().filter(|k| k.starts_with("gz-")).count();
    assert!(gz_rows > 0 && gz_rows < 3000, "{gz_rows} rows before the cut");
    kinds.insert("source:truncated_input".into());
    assert!(kinds.len() >= 30, "only {} kinds of bad input covered", kinds.len());
    println!("{} kinds of bad input: {kinds:?}", kinds.len());
    assert_eq!(neighbours, jsonl_corpus().len());
}
