//! The model's feature list: one entry per column of a feature row, with its
//! unit and the OpenFoodFacts export column it comes from.

use serde::{Deserialize, Serialize};

/// One model feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feature {
    /// Name used in feature rows, the artifact and the mart.
    pub name: &'static str,
    /// Unit of the value, always per 100 g of product.
    pub unit: &'static str,
    /// Column of the official OpenFoodFacts export holding it.
    pub off_column: &'static str,
}

/// Number of features in a feature row.
pub const N_FEATURES: usize = 8;

/// The features, in feature-row order.
pub const FEATURES: [Feature; N_FEATURES] = [
    Feature { name: "energy_kj", unit: "kJ/100g", off_column: "energy_100g" },
    Feature { name: "fat_g", unit: "g/100g", off_column: "fat_100g" },
    Feature { name: "saturated_fat_g", unit: "g/100g", off_column: "saturated-fat_100g" },
    Feature { name: "carbohydrates_g", unit: "g/100g", off_column: "carbohydrates_100g" },
    Feature { name: "sugars_g", unit: "g/100g", off_column: "sugars_100g" },
    Feature { name: "fiber_g", unit: "g/100g", off_column: "fiber_100g" },
    Feature { name: "proteins_g", unit: "g/100g", off_column: "proteins_100g" },
    Feature { name: "salt_g", unit: "g/100g", off_column: "salt_100g" },
];

/// Export columns read besides the features' own: used to derive a missing
/// feature (kcal → kJ, sodium → salt).
pub const ENERGY_KCAL_COLUMN: &str = "energy-kcal_100g";
/// See [`ENERGY_KCAL_COLUMN`].
pub const SODIUM_COLUMN: &str = "sodium_100g";

/// Every nutrient column a raw product may carry.
pub fn raw_nutrient_columns() -> impl Iterator<Item = &'static str> {
    FEATURES.iter().map(|f| f.off_column).chain([ENERGY_KCAL_COLUMN, SODIUM_COLUMN])
}

/// Index of a feature by name.
pub fn feature_index(name: &str) -> Option<usize> {
    FEATURES.iter().position(|f| f.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_names_and_columns_are_unique() {
        let mut names: Vec<_> = FEATURES.iter().map(|f| f.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), N_FEATURES);
        let mut columns: Vec<_> = raw_nutrient_columns().collect();
        columns.sort();
        columns.dedup();
        assert_eq!(columns.len(), N_FEATURES + 2);
        assert_eq!(feature_index("salt_g"), Some(7));
        assert_eq!(feature_index("nope"), None);
    }
}
