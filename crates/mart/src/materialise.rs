//! The mart's derived table: per-cluster profiles, recomputed with Polars
//! from the product and assignment tables. Derived state is rebuilt from
//! tables keyed by product code, so redelivered predictions never count twice.

use std::collections::HashMap;

use lab8_bus::maintenance::scan_hash;
use lab8_protocol::messages::{ClusterProfile, Prediction, ProductRow};
use lab8_protocol::{Keys, FEATURES, N_FEATURES};
use polars::prelude::*;
use redis::aio::ConnectionManager;

use crate::MartError;

/// Categories listed per cluster.
pub const TOP_CATEGORIES: usize = 5;

/// The mart's tables as read from Redis.
#[derive(Debug, Default)]
pub struct MartTables {
    pub products: Vec<ProductRow>,
    pub assignments: HashMap<String, Prediction>,
}

impl MartTables {
    pub async fn read(conn: &mut ConnectionManager, keys: &Keys) -> Result<Self, MartError> {
        let products = scan_hash(conn, &keys.mart_products())
            .await?
            .into_iter()
            .map(|(_, json)| serde_json::from_str(&json))
            .collect::<Result<Vec<ProductRow>, _>>()?;
        let assignments = scan_hash(conn, &keys.mart_assignments())
            .await?
            .into_iter()
            .map(|(code, json)| serde_json::from_str(&json).map(|p| (code, p)))
            .collect::<Result<HashMap<String, Prediction>, _>>()?;
        Ok(Self { products, assignments })
    }
}

/// Splits an OpenFoodFacts categories field (`"Snacks, Sweet snacks"`) into
/// normalised category names.
pub fn split_categories(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(',').map(|c| c.trim().to_lowercase()).filter(|c| !c.is_empty())
}

/// Count, mean feature profile and top categories of each cluster, over the
/// products that have a cluster.
pub fn cluster_profiles(tables: &MartTables) -> Result<Vec<ClusterProfile>, MartError> {
    let assigned: Vec<(&ProductRow, &Prediction)> =
        tables.products.iter().filter_map(|p| tables.assignments.get(&p.code).map(|a| (p, a))).collect();
    if assigned.is_empty() {
        return Ok(Vec::new());
    }
    let mut columns =
        vec![Column::new("cluster".into(), assigned.iter().map(|(_, a)| a.cluster).collect::<Vec<u32>>())];
    for (i, feature) in FEATURES.iter().enumerate() {
        columns.push(Column::new(feature.name.into(), assigned.iter().map(|(p, _)| p.x[i]).collect::<Vec<f64>>()));
    }
    let frame = DataFrame::new(assigned.len(), columns)?;
    let mut aggregations = vec![len().alias("count")];
    aggregations.extend(FEATURES.iter().map(|f| col(f.name).mean()));
    let grouped = frame
        .lazy()
        .group_by([col("cluster")])
        .agg(aggregations)
        .sort(["cluster"], SortMultipleOptions::default())
        .collect()?;

    let clusters = grouped.column("cluster")?.u32()?.clone();
    let counts = grouped.column("count")?.cast(&DataType::UInt64)?;
    let counts = counts.u64()?;
    let means: Vec<Float64Chunked> =
        FEATURES.iter().map(|f| grouped.column(f.name).and_then(|c| c.f64().cloned())).collect::<PolarsResult<_>>()?;

    let mut category_counts: HashMap<u32, HashMap<String, u64>> = HashMap::new();
    let mut versions: HashMap<u32, &str> = HashMap::new();
    for (product, assignment) in &assigned {
        versions.insert(assignment.cluster, &assignment.model_version);
        let counts = category_counts.entry(assignment.cluster).or_default();
        for category in product.categories.as_deref().map(split_categories).into_iter().flatten() {
            *counts.entry(category).or_default() += 1;
        }
    }
    let mut profiles = Vec::with_capacity(grouped.height());
    for row in 0..grouped.height() {
        let cluster = clusters.get(row).expect("group key");
        let mut mean = [0.0; N_FEATURES];
        for (slot, column) in mean.iter_mut().zip(&means) {
            *slot = column.get(row).unwrap_or(f64::NAN);
        }
        let mut top: Vec<(String, u64)> = category_counts.remove(&cluster).unwrap_or_default().into_iter().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(TOP_CATEGORIES);
        profiles.push(ClusterProfile {
            cluster,
            count: counts.get(row).unwrap_or(0),
            mean,
            top_categories: top,
            model_version: versions.get(&cluster).map(|v| v.to_string()).unwrap_or_default(),
        });
    }
    Ok(profiles)
}

/// Recomputes the profiles and replaces the cluster table atomically.
pub async fn refresh_profiles(
    conn: &mut ConnectionManager,
    keys: &Keys,
) -> Result<(MartTables, Vec<ClusterProfile>), MartError> {
    let tables = MartTables::read(conn, keys).await?;
    let profiles = cluster_profiles(&tables)?;
    let mut pipe = redis::pipe();
    pipe.atomic().del(keys.mart_clusters()).ignore();
    for profile in &profiles {
        pipe.hset(keys.mart_clusters(), profile.cluster, serde_json::to_string(profile)?).ignore();
    }
    pipe.exec_async(conn).await?;
    Ok((tables, profiles))
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

    fn product(code: &str, fat: f64, categories: &str) -> ProductRow {
        let mut x = [1.0; N_FEATURES];
        x[1] = fat;
        ProductRow {
            code: code.into(),
            name: None,
            categories: Some(categories.into()),
            nutriscore: None,
            x,
            imputed: vec![],
        }
    }

    fn prediction(code: &str, cluster: u32) -> (String, Prediction) {
        (code.into(), Prediction { code: code.into(), cluster, distance: 0.5, model_version: "1.0.0".into() })
    }

    #[test]
    fn profiles_count_and_average_per_cluster() {
        let tables = MartTables {
            products: vec![
                product("a", 10.0, "Breads, Rye"),
                product("b", 20.0, "breads"),
                product("c", 1.0, "cookies"),
                product("d", 5.0, "unassigned"),
            ],
            assignments: [prediction("a", 1), prediction("b", 1), prediction("c", 0)].into_iter().collect(),
        };
        let profiles = cluster_profiles(&tables).unwrap();
        assert_eq!(profiles.len(), 2);
        assert_eq!((profiles[0].cluster, profiles[0].count), (0, 1));
        assert_eq!((profiles[1].cluster, profiles[1].count), (1, 2));
        assert_eq!(profiles[1].mean[1], 15.0);
        assert_eq!(profiles[1].top_categories[0], ("breads".to_string(), 2));
        assert!(render_profiles(&profiles).contains("breads (2)"));
    }

    #[test]
    fn no_assignments_no_profiles() {
        assert!(cluster_profiles(&MartTables::default()).unwrap().is_empty());
    }
}
