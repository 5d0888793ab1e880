//! The mart's derived state: per-model, per-cluster aggregates (count, sums
//! and sums of squares of the fixed-point features, category counts), kept
//! incrementally by the commit script (`effects.lua`) in the same atomic
//! step that acknowledges a prediction. A profile refresh reads O(k) keys,
//! never the product table, so the mart's memory does not grow with it.
//! [`rebuild`] recomputes the same aggregates from the tables, page by page
//! (repair and verification: `lab8-mart rebuild [--check]`).

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use lab8_bus::{CommitScript, VERSION_LUA};
use lab8_protocol::messages::{ClusterProfile, Prediction, ProductRow};
use lab8_protocol::version::FIXED_POINT_SCALE;
use lab8_protocol::{Keys, FEATURES, N_FEATURES};
use redis::aio::ConnectionManager;

use crate::MartError;

/// Categories listed per cluster.
pub const TOP_CATEGORIES: usize = 5;

/// The commit script with the mart's effects (`upsert`, `assign`).
pub static MART_COMMIT: LazyLock<CommitScript> =
    LazyLock::new(|| CommitScript::with_effects(&format!("{VERSION_LUA}\n{}", include_str!("effects.lua"))));

/// One cluster's aggregate under one model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterAggregate {
    pub count: i64,
    /// Sums of the fixed-point features.
    pub sums: [i64; N_FEATURES],
    /// Sums of their squares.
    pub squares: [i64; N_FEATURES],
    /// Tag → products carrying it.
    pub categories: BTreeMap<String, i64>,
}

impl ClusterAggregate {
    fn add(&mut self, row: &ProductRow) {
        self.count += 1;
        for (i, v) in row.fixed.iter().enumerate() {
            self.sums[i] += v;
            self.squares[i] += v * v;
        }
        for tag in &row.tags {
            *self.categories.entry(tag.clone()).or_default() += 1;
        }
    }

    /// The profile of this cluster, with the top categories given.
    pub fn profile(&self, cluster: u32, model_version: &str, top: Vec<(String, u64)>) -> ClusterProfile {
        let n = self.count.max(1) as f64;
        let mut mean = [0.0; N_FEATURES];
        let mut std = [0.0; N_FEATURES];
        for i in 0..N_FEATURES {
            let m = self.sums[i] as f64 / n;
            mean[i] = m / FIXED_POINT_SCALE;
            std[i] = (self.squares[i] as f64 / n - m * m).max(0.0).sqrt() / FIXED_POINT_SCALE;
        }
        ClusterProfile {
            cluster,
            count: self.count as u64,
            mean,
            std,
            top_categories: top,
            model_version: model_version.to_string(),
        }
    }

    /// The most frequent categories, ties by name descending (as Redis
    /// orders a sorted set read in reverse).
    pub fn top_categories(&self) -> Vec<(String, u64)> {
        let mut top: Vec<(String, u64)> = self.categories.iter().map(|(c, n)| (c.clone(), *n as u64)).collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
        top.truncate(TOP_CATEGORIES);
        top
    }
}

/// Every cluster's aggregate under one model.
pub type Aggregates = BTreeMap<u32, ClusterAggregate>;

/// The model the mart's view shows, if any.
pub async fn current_model(conn: &mut ConnectionManager, keys: &Keys) -> Result<Option<String>, MartError> {
    Ok(redis::cmd("GET").arg(keys.mart_current_model()).query_async(conn).await?)
}

/// Model versions with state in the mart, oldest first.
pub async fn live_models(conn: &mut ConnectionManager, keys: &Keys) -> Result<Vec<String>, MartError> {
    Ok(redis::cmd("ZRANGE").arg(keys.models()).arg(0).arg(-1).query_async(conn).await?)
}

async fn cluster_ids(conn: &mut ConnectionManager, keys: &Keys, version: &str) -> Result<Vec<u32>, MartError> {
    let mut ids: Vec<u32> = redis::cmd("SMEMBERS").arg(keys.model_key(version, "clusters")).query_async(conn).await?;
    ids.sort_unstable();
    Ok(ids)
}

async fn read_sums(
    conn: &mut ConnectionManager,
    keys: &Keys,
    version: &str,
    cluster: u32,
) -> Result<ClusterAggregate, MartError> {
    let fields: HashMap<String, i64> =
        redis::cmd("HGETALL").arg(keys.model_key(version, &format!("cluster:{cluster}"))).query_async(conn).await?;
    let field = |name: String| fields.get(&name).copied().unwrap_or(0);
    Ok(ClusterAggregate {
        count: field("count".into()),
        sums: std::array::from_fn(|i| field(format!("s{i}"))),
        squares: std::array::from_fn(|i| field(format!("q{i}"))),
        categories: BTreeMap::new(),
    })
}

async fn read_categories(
    conn: &mut ConnectionManager,
    keys: &Keys,
    version: &str,
    cluster: u32,
    limit: Option<usize>,
) -> Result<Vec<(String, f64)>, MartError> {
    let stop = limit.map(|n| n as i64 - 1).unwrap_or(-1);
    Ok(redis::cmd("ZREVRANGE")
        .arg(keys.model_key(version, &format!("categories:{cluster}")))
        .arg(0)
        .arg(stop)
        .arg("WITHSCORES")
        .query_async(conn)
        .await?)
}

/// The aggregates the commits kept, in full (for verification).
pub async fn read_incremental(
    conn: &mut ConnectionManager,
    keys: &Keys,
    version: &str,
) -> Result<Aggregates, MartError> {
    let mut out = Aggregates::new();
    for cluster in cluster_ids(conn, keys, version).await? {
        let mut aggregate = read_sums(conn, keys, version, cluster).await?;
        aggregate.categories = read_categories(conn, keys, version, cluster, None)
            .await?
            .into_iter()
            .map(|(tag, n)| (tag, n as i64))
            .collect();
        out.insert(cluster, aggregate);
    }
    Ok(out)
}

/// Recomputes `version`'s aggregates from its assignments and the product
/// table, a page at a time (memory bounded by the page, not the table).
pub async fn rebuild(conn: &mut ConnectionManager, keys: &Keys, version: &str) -> Result<Aggregates, MartError> {
    let current = current_model(conn, keys).await?;
    let assignments = keys.assignments_of(version, current.as_deref());
    let mut out = Aggregates::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, page): (u64, Vec<(String, String)>) =
            redis::cmd("HSCAN").arg(&assignments).arg(cursor).arg("COUNT").arg(1000).query_async(conn).await?;
        if !page.is_empty() {
            let codes: Vec<&str> = page.iter().map(|(code, _)| code.as_str()).collect();
            let rows: Vec<Option<String>> =
                redis::cmd("HMGET").arg(keys.mart_products()).arg(&codes).query_async(conn).await?;
            for ((code, prediction), row) in page.iter().zip(rows) {
                let prediction: Prediction = serde_json::from_str(prediction)?;
                let Some(row) = row else {
                    return Err(MartError::Inconsistent(format!("{code} is assigned but not in the product table")));
                };
                out.entry(prediction.cluster).or_default().add(&serde_json::from_str(&row)?);
            }
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    Ok(out)
}

/// Replaces `version`'s aggregates with `aggregates` in one transaction
/// (repair; run it with the mart stopped).
pub async fn write_aggregates(
    conn: &mut ConnectionManager,
    keys: &Keys,
    version: &str,
    aggregates: &Aggregates,
) -> Result<(), MartError> {
    let mut pipe = redis::pipe();
    pipe.atomic();
    for cluster in cluster_ids(conn, keys, version).await? {
        pipe.del(keys.model_key(version, &format!("cluster:{cluster}"))).ignore();
        pipe.del(keys.model_key(version, &format!("categories:{cluster}"))).ignore();
    }
    pipe.del(keys.model_key(version, "clusters")).ignore();
    for (cluster, aggregate) in aggregates {
        let mut fields: Vec<(String, i64)> = vec![("count".into(), aggregate.count)];
        fields.extend((0..N_FEATURES).map(|i| (format!("s{i}"), aggregate.sums[i])));
        fields.extend((0..N_FEATURES).map(|i| (format!("q{i}"), aggregate.squares[i])));
        pipe.hset_multiple(keys.model_key(version, &format!("cluster:{cluster}")), &fields).ignore();
        let members: Vec<(i64, &str)> = aggregate.categories.iter().map(|(c, n)| (*n, c.as_str())).collect();
        if !members.is_empty() {
            pipe.zadd_multiple(keys.model_key(version, &format!("categories:{cluster}")), &members).ignore();
        }
        pipe.sadd(keys.model_key(version, "clusters"), cluster).ignore();
    }
    pipe.exec_async(conn).await?;
    Ok(())
}

/// Rebuilds every live model's aggregates; with `check`, only compares and
/// returns the differences, else replaces the incremental ones.
pub async fn rebuild_all(bus: &lab8_bus::Bus, check: bool) -> Result<Vec<String>, MartError> {
    let mut conn = bus.conn();
    let keys = bus.keys();
    let mut found = Vec::new();
    for version in live_models(&mut conn, keys).await? {
        let started = std::time::Instant::now();
        let rebuilt = rebuild(&mut conn, keys, &version).await?;
        let products: i64 = rebuilt.values().map(|a| a.count).sum();
        if check {
            let differences = differences(&read_incremental(&mut conn, keys, &version).await?, &rebuilt);
            println!(
                "model {version}: {products} products in {} clusters rebuilt in {:.2} s; {} differences",
                rebuilt.len(),
                started.elapsed().as_secs_f64(),
                differences.len()
            );
            found.extend(differences.into_iter().map(|d| format!("model {version}: {d}")));
        } else {
            write_aggregates(&mut conn, keys, &version, &rebuilt).await?;
            println!(
                "model {version}: {products} products in {} clusters rebuilt and written in {:.2} s",
                rebuilt.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(found)
}

/// Where the move to the newest model stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchState {
    /// The current model after this step ('' when none).
    pub current: String,
    /// `none`, `current`, `backfilling` or `switched`.
    pub state: String,
    /// Products the newest model has assigned, and how many it must reach.
    pub assigned: u64,
    pub needed: u64,
}

/// One step of the move to the newest model (`switch.lua`).
pub async fn switch_model(conn: &mut ConnectionManager, keys: &Keys) -> Result<SwitchState, MartError> {
    static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(include_str!("switch.lua")));
    let (current, state, assigned, needed): (String, String, u64, u64) =
        SCRIPT.arg(keys.script_context()).invoke_async(conn).await?;
    Ok(SwitchState { current, state, assigned, needed })
}

/// The current model's profiles from its aggregates: O(k) reads.
pub async fn current_profiles(conn: &mut ConnectionManager, keys: &Keys) -> Result<Vec<ClusterProfile>, MartError> {
    let Some(version) = current_model(conn, keys).await? else { return Ok(Vec::new()) };
    let mut profiles = Vec::new();
    for cluster in cluster_ids(conn, keys, &version).await? {
        let aggregate = read_sums(conn, keys, &version, cluster).await?;
        let top = read_categories(conn, keys, &version, cluster, Some(TOP_CATEGORIES))
            .await?
            .into_iter()
            .map(|(tag, n)| (tag, n as u64))
            .collect();
        profiles.push(aggregate.profile(cluster, &version, top));
    }
    Ok(profiles)
}

/// Writes the profiles to the cluster table atomically.
pub async fn publish_profiles(
    conn: &mut ConnectionManager,
    keys: &Keys,
    profiles: &[ClusterProfile],
) -> Result<(), MartError> {
    let mut pipe = redis::pipe();
    pipe.atomic().del(keys.mart_clusters()).ignore();
    for profile in profiles {
        pipe.hset(keys.mart_clusters(), profile.cluster, serde_json::to_string(profile)?).ignore();
    }
    pipe.exec_async(conn).await?;
    Ok(())
}

/// Where the incremental aggregates differ from a rebuild, one line per
/// difference (empty when equal).
pub fn differences(incremental: &Aggregates, rebuilt: &Aggregates) -> Vec<String> {
    let mut out = Vec::new();
    let clusters: std::collections::BTreeSet<&u32> = incremental.keys().chain(rebuilt.keys()).collect();
    for cluster in clusters {
        match (incremental.get(cluster), rebuilt.get(cluster)) {
            (Some(a), Some(b)) if a == b => {}
            (a, b) => out.push(format!("cluster {cluster}: incremental {a:?}, rebuilt {b:?}")),
        }
    }
    out
}

/// The profiles as a text table.
pub fn render_profiles(profiles: &[ClusterProfile]) -> String {
    let mut out = format!("{:>7} {:>6}", "cluster", "count");
    for feature in FEATURES {
        out.push_str(&format!(" {:>15}", feature.name));
    }
    out.push_str("  top categories\n");
    for p in profiles {
        out.push_str(&format!("{:>7} {:>6}", p.cluster, p.count));
        for value in p.mean {
            out.push_str(&format!(" {value:>15.2}"));
        }
        let top: Vec<String> = p.top_categories.iter().take(3).map(|(c, n)| format!("{c} ({n})")).collect();
        out.push_str(&format!("  {}\n", top.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use lab8_protocol::messages::RawProduct;

    fn row(code: &str, fat: f64, categories: &str) -> ProductRow {
        let mut x = [1.0; N_FEATURES];
        x[1] = fat;
        let raw = RawProduct { code: code.into(), categories: Some(categories.into()), ..Default::default() };
        ProductRow::new(&raw, raw.version(), x, vec![])
    }

    #[test]
    fn aggregates_give_means_spreads_and_top_categories() {
        let mut aggregate = ClusterAggregate::default();
        for (code, fat, categories) in [("a", 10.0, "Breads, Rye"), ("b", 20.0, "breads"), ("c", 30.0, "cookies")] {
            aggregate.add(&row(code, fat, categories));
        }
        let profile = aggregate.profile(1, "m", aggregate.top_categories());
        assert_eq!(profile.count, 3);
        assert!((profile.mean[1] - 20.0).abs() < 1e-12);
        assert!((profile.std[1] - (200.0f64 / 3.0).sqrt()).abs() < 1e-9);
        assert_eq!(profile.std[0], 0.0);
        assert_eq!(profile.top_categories, [("breads".to_string(), 2), ("rye".into(), 1), ("cookies".into(), 1)]);
        assert!(render_profiles(&[profile]).contains("breads (2)"));
    }

    #[test]
    fn differences_name_the_cluster() {
        let mut a = Aggregates::new();
        a.entry(0).or_default().add(&row("a", 1.0, "x"));
        assert!(differences(&a, &a.clone()).is_empty());
        let mut b = a.clone();
        b.entry(0).or_default().add(&row("b", 1.0, "x"));
        assert!(differences(&a, &b)[0].starts_with("cluster 0"));
        assert_eq!(differences(&a, &Aggregates::new()).len(), 1);
    }
}
