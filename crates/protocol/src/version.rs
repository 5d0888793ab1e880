//! Product versions and the fixed-point form of features the mart's
//! aggregates are kept in.
//!
//! A version is `"<last_modified_t>:<content hash>"` (the timestamp empty
//! when the export has none). [`compare`] is the rule; `version.lua` in the
//! bus crate is the same rule for the scripts, and a test runs both on the
//! same cases.

use crate::features::N_FEATURES;

/// How a record's version stands against the stored one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionOrder {
    /// Replaces the stored record everywhere.
    Newer,
    /// Changes nothing (counted `unchanged`).
    Same,
    /// Ignored (counted `stale`).
    Older,
}

/// The version rule: OpenFoodFacts' `last_modified_t` when both records have
/// one; otherwise a different content is newer by arrival and the same
/// content changes nothing.
pub fn compare(new: &str, old: Option<&str>) -> VersionOrder {
    let Some(old) = old else { return VersionOrder::Newer };
    let (new_t, new_hash) = new.split_once(':').unwrap_or(("", new));
    let (old_t, old_hash) = old.split_once(':').unwrap_or(("", old));
    match (new_t.parse::<i64>(), old_t.parse::<i64>()) {
        (Ok(a), Ok(b)) if a > b => VersionOrder::Newer,
        (Ok(a), Ok(b)) if a < b => VersionOrder::Older,
        (Ok(_), Ok(_)) => VersionOrder::Same,
        _ if new_hash == old_hash => VersionOrder::Same,
        _ => VersionOrder::Newer,
    }
}

/// A version string from an optional timestamp and the record's canonical bytes.
pub fn version_of(last_modified: Option<i64>, canonical: &[u8]) -> String {
    let t = last_modified.map(|t| t.to_string()).unwrap_or_default();
    format!("{t}:{:016x}", fnv1a(canonical))
}

/// FNV-1a, 64 bits: stable across builds and platforms (std's hasher is not).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// Features are aggregated in hundredths, as integers: sums and sums of
/// squares then add and subtract exactly, so an incremental profile equals a
/// recomputed one bit for bit. (3,800 kJ → 380,000; squared 1.4e11, exact in
/// the doubles Lua computes with; 5M products sum to 7e17 < 2^63.)
pub const FIXED_POINT_SCALE: f64 = 100.0;

/// The features in fixed point.
pub fn fixed_point(x: &[f64; N_FEATURES]) -> [i64; N_FEATURES] {
    x.map(|v| (v * FIXED_POINT_SCALE).round() as i64)
}

/// Normalised category tags of a product: canonical `categories_tags`
/// (`en:breakfast-cereals`) are kept as they are, free-text categories are
/// trimmed and lower-cased; duplicates dropped, order kept.
pub fn category_tags(text: &str) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    for tag in text.split(',').map(|c| c.trim().to_lowercase()).filter(|c| !c.is_empty()) {
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    tags
}

/// Cases shared with the Lua rule (`crates/bus/tests/bus.rs` runs them in Redis).
pub const VERSION_CASES: &[(&str, Option<&str>, VersionOrder)] = &[
    (":aa", None, VersionOrder::Newer),
    (":aa", Some(":aa"), VersionOrder::Same),
    (":bb", Some(":aa"), VersionOrder::Newer),
    ("20:aa", Some("10:bb"), VersionOrder::Newer),
    ("10:aa", Some("20:bb"), VersionOrder::Older),
    ("10:aa", Some("10:bb"), VersionOrder::Same),
    ("10:aa", Some(":bb"), VersionOrder::Newer),
    (":aa", Some("10:aa"), VersionOrder::Same),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule() {
        for (new, old, expected) in VERSION_CASES {
            assert_eq!(compare(new, *old), *expected, "{new} against {old:?}");
        }
    }

    #[test]
    fn hashes_fixed_points_and_tags() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(version_of(Some(7), b"a"), "7:af63dc4c8601ec8c");
        assert_eq!(version_of(None, b"a"), ":af63dc4c8601ec8c");
        assert_eq!(fixed_point(&[1.005, 3800.0, 0.0, 0.124, 0.125, 2.0, 1.0, 0.0])[1], 380_000);
        assert_eq!(category_tags(" Breads, breads ,en:rye-breads,,"), ["breads", "en:rye-breads"]);
    }
}
