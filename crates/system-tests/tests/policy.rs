//! One cleaning policy: the mart's vectorised batches and `lab8_policy::clean`
//! (which `/predict` applies) give the same verdict on every record of the
//! bad-input corpus, read the way the source reads it.

use lab8_mart::clean::{clean_batch, Verdict};
use lab8_protocol::messages::RawProduct;
use lab8_source::input::product_from_json;
use lab8_system_tests::{jsonl_corpus, Fate};

#[test]
fn the_mart_and_the_policy_agree_on_the_corpus() {
    let products: Vec<RawProduct> = jsonl_corpus()
        .into_iter()
        .filter_map(|(line, _, _)| serde_json::from_slice(&line).ok())
        .filter_map(|value| product_from_json(value, None).ok())
        .collect();
    let verdicts = clean_batch(&products).unwrap();
    let mut rejected = 0;
    for (product, verdict) in products.iter().zip(&verdicts) {
        match (lab8_policy::clean(&product.nutrients), verdict) {
            (Ok(policy), Verdict::Clean { features, .. }) => assert_eq!(policy.x, features.x, "{}", product.code),
            (Err(policy), Verdict::Rejected { reason }) => {
                rejected += 1;
                assert_eq!(policy, *reason, "{}", product.code)
            }
            (policy, mart) => panic!("{}: policy says {policy:?}, the mart {mart:?}", product.code),
        }
    }
    // The comparison covers every case the corpus sends to the mart.
    let mart_cases = jsonl_corpus().iter().filter(|(_, fate, _)| matches!(fate, Fate::Mart(_))).count();
    assert_eq!(rejected, mart_cases);
    assert!(products.len() > mart_cases, "accepted cases are compared too");
}
