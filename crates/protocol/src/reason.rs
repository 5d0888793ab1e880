//! Why a record was rejected: every reason a stage can give, with the wire
//! name written to the dead-letter stream (`reason` field) and counted in
//! metrics. The only place a reason is spelled; the Lua scripts receive the
//! names they write as arguments.

use std::fmt;

use crate::features::{raw_nutrient_columns, FEATURES};

/// A JSON field of an input record whose type was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JsonField {
    Code,
    Text,
    Nutrients,
}

impl JsonField {
    pub const ALL: [JsonField; 3] = [JsonField::Code, JsonField::Text, JsonField::Nutrients];

    pub fn as_str(self) -> &'static str {
        match self {
            JsonField::Code => "code",
            JsonField::Text => "text",
            JsonField::Nutrients => "nutrients",
        }
    }
}

/// A machine-readable rejection reason. Variants that name a column carry
/// the export column (`fat_100g`); those that name a feature carry the
/// feature (`fat_g`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    // Reading the input (source).
    MissingCodeColumn,
    ColumnCount,
    FieldTooLarge,
    InvalidUtf8,
    MalformedJson,
    NotAnObject,
    WrongType(JsonField),
    MissingCode,
    InvalidCode,
    TruncatedInput,
    CorruptInput,
    ReadError,
    // Transport (a stream entry a consumer cannot read).
    MissingPayload,
    MalformedPrediction,
    MalformedFeatureRow,
    // The cleaning policy (mart, and the model's /predict).
    UnparsableNumber(&'static str),
    NonFinite(&'static str),
    SaltSodiumMismatch,
    MissingRequired(&'static str),
    NegativeValue(&'static str),
    OutOfRange(&'static str),
    MacroSumExceeds100,
    SaturatedFatExceedsFat,
    SugarsExceedCarbohydrates,
    // One product per code (applied atomically in the mart's commit).
    DuplicateCode,
    // The model's input check.
    NonFiniteFeature,
}

impl Reason {
    /// The reason's family, without the column or feature it names.
    pub fn kind(&self) -> &'static str {
        match self {
            Reason::MissingCodeColumn => "missing_code_column",
            Reason::ColumnCount => "column_count",
            Reason::FieldTooLarge => "field_too_large",
            Reason::InvalidUtf8 => "invalid_utf8",
            Reason::MalformedJson => "malformed_json",
            Reason::NotAnObject => "not_an_object",
            Reason::WrongType(_) => "wrong_type",
            Reason::MissingCode => "missing_code",
            Reason::InvalidCode => "invalid_code",
            Reason::TruncatedInput => "truncated_input",
            Reason::CorruptInput => "corrupt_input",
            Reason::ReadError => "read_error",
            Reason::MissingPayload => "missing_payload",
            Reason::MalformedPrediction => "malformed_prediction",
            Reason::MalformedFeatureRow => "malformed_feature_row",
            Reason::UnparsableNumber(_) => "unparsable_number",
            Reason::NonFinite(_) => "non_finite",
            Reason::SaltSodiumMismatch => "salt_sodium_mismatch",
            Reason::MissingRequired(_) => "missing_required",
            Reason::NegativeValue(_) => "negative_value",
            Reason::OutOfRange(_) => "out_of_range",
            Reason::MacroSumExceeds100 => "macro_sum_exceeds_100",
            Reason::SaturatedFatExceedsFat => "saturated_fat_exceeds_fat",
            Reason::SugarsExceedCarbohydrates => "sugars_exceed_carbohydrates",
            Reason::DuplicateCode => "duplicate_code",
            Reason::NonFiniteFeature => "non_finite_feature",
        }
    }

    /// The column, feature or field the reason names, if any.
    pub fn subject(&self) -> Option<&'static str> {
        match self {
            Reason::WrongType(field) => Some(field.as_str()),
            Reason::UnparsableNumber(s)
            | Reason::NonFinite(s)
            | Reason::MissingRequired(s)
            | Reason::NegativeValue(s)
            | Reason::OutOfRange(s) => Some(s),
            _ => None,
        }
    }

    /// The name on the wire: `kind` or `kind:subject`.
    pub fn wire_name(&self) -> String {
        self.to_string()
    }

    /// Every reason there is, each column and feature spelled out.
    pub fn all() -> Vec<Reason> {
        let mut all = vec![
            Reason::MissingCodeColumn,
            Reason::ColumnCount,
            Reason::FieldTooLarge,
            Reason::InvalidUtf8,
            Reason::MalformedJson,
            Reason::NotAnObject,
            Reason::MissingCode,
            Reason::InvalidCode,
            Reason::TruncatedInput,
            Reason::CorruptInput,
            Reason::ReadError,
            Reason::MissingPayload,
            Reason::MalformedPrediction,
            Reason::MalformedFeatureRow,
            Reason::SaltSodiumMismatch,
            Reason::MacroSumExceeds100,
            Reason::SaturatedFatExceedsFat,
            Reason::SugarsExceedCarbohydrates,
            Reason::DuplicateCode,
            Reason::NonFiniteFeature,
        ];
        all.extend(JsonField::ALL.map(Reason::WrongType));
        for column in raw_nutrient_columns() {
            all.extend([Reason::UnparsableNumber(column), Reason::NonFinite(column)]);
        }
        for feature in FEATURES {
            all.extend([
                Reason::MissingRequired(feature.name),
                Reason::NegativeValue(feature.name),
                Reason::OutOfRange(feature.name),
            ]);
        }
        all
    }

    /// The reason with this wire name, if it is one.
    pub fn from_wire(name: &str) -> Option<Reason> {
        Reason::all().into_iter().find(|r| r.to_string() == name)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.subject() {
            Some(subject) => write!(f, "{}:{subject}", self.kind()),
            None => f.write_str(self.kind()),
        }
    }
}

impl serde::Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_are_unique_and_round_trip() {
        let all = Reason::all();
        let mut names: Vec<String> = all.iter().map(Reason::wire_name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len());
        for reason in all {
            assert_eq!(Reason::from_wire(&reason.wire_name()), Some(reason));
        }
        assert_eq!(Reason::OutOfRange("fat_g").to_string(), "out_of_range:fat_g");
        assert_eq!(Reason::WrongType(JsonField::Code).to_string(), "wrong_type:code");
        assert_eq!(Reason::DuplicateCode.kind(), "duplicate_code");
        assert_eq!(Reason::from_wire("no_such_reason"), None);
    }
}
