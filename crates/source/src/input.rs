//! Reading OpenFoodFacts exports: TSV (the official layout and the reduced
//! one of the bundled sample), CSV and JSONL, each optionally gzip'd, as a
//! stream of records with constant memory. Columns are found by header name.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use lab8_protocol::features::raw_nutrient_columns;
use lab8_protocol::messages::RawProduct;
use lab8_protocol::reason::{JsonField, Reason};
use serde_json::Value;

/// Longest field kept; a longer one rejects the record (`field_too_large`).
pub const MAX_FIELD_BYTES: usize = 16 * 1024;
/// Longest product code accepted.
pub const MAX_CODE_BYTES: usize = 64;

/// Columns holding the product name, in order of preference.
const NAME_COLUMNS: &[&str] = &["product_name", "product_name_en", "name"];
/// Columns holding categories, in order of preference.
const CATEGORY_COLUMNS: &[&str] =
    &["categories_tags", "categories", "categories_en", "main_category_en", "main_category", "pnns_groups_1"];
/// Columns holding the Nutri-Score grade, in order of preference.
/// Columns holding the record's modification time (Unix seconds).
const LAST_MODIFIED_COLUMNS: &[&str] = &["last_modified_t", "last_modified"];
const NUTRISCORE_COLUMNS: &[&str] = &["nutriscore_grade", "nutrition_grade_fr", "nutriscore"];

/// A record the source could not turn into a product, with why.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub reason: Reason,
    /// Product code if one was readable.
    pub code: String,
    /// The input as read (cut when stored).
    pub raw: Vec<u8>,
    /// Where it was: `file:line` or the index in an HTTP batch.
    pub location: String,
}

/// One record read from an input.
pub type SourceRecord = Result<RawProduct, Rejection>;

/// Input layout (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Tsv,
    Csv,
    Jsonl,
}

impl Format {
    /// From the file name (`.tsv`, `.csv`, `.jsonl`/`.ndjson`/`.json`, with or
    /// without `.gz`); `None` when the name says nothing.
    pub fn from_path(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_string_lossy().to_lowercase();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        let ext = name.rsplit('.').next()?;
        match ext {
            "tsv" | "tab" => Some(Format::Tsv),
            "csv" => Some(Format::Csv),
            "jsonl" | "ndjson" | "json" => Some(Format::Jsonl),
            _ => None,
        }
    }

    /// From the first line: JSON when it starts with `{`, else TSV when it
    /// has more tabs than commas.
    pub fn sniff(first_line: &[u8]) -> Format {
        let trimmed = first_line.iter().skip_while(|b| b.is_ascii_whitespace()).copied().next();
        if trimmed == Some(b'{') {
            return Format::Jsonl;
        }
        let tabs = first_line.iter().filter(|&&b| b == b'\t').count();
        let commas = first_line.iter().filter(|&&b| b == b',').count();
        if tabs >= commas {
            Format::Tsv
        } else {
            Format::Csv
        }
    }
}

/// Options for reading files.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Forces the format instead of guessing it from the name or content.
    pub format: Option<Format>,
    /// Category for products without one, taken from the file name
    /// (`products_only_breads.tsv` → `breads`): the bundled sample's only label.
    pub category_from_file_name: bool,
}

/// Category derived from a file name: its stem without extensions and
/// without a `products_only_` prefix.
pub fn category_from_file_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    let stem = name.split('.').next()?;
    let stem = stem.strip_prefix("products_only_").unwrap_or(stem);
    (!stem.is_empty()).then(|| stem.to_string())
}

/// Maps the columns of a header to the product's fields.
#[derive(Debug, Clone)]
struct ColumnMap {
    code: Option<usize>,
    name: Vec<usize>,
    categories: Vec<usize>,
    nutriscore: Vec<usize>,
    nutrients: Vec<(usize, &'static str)>,
    last_modified: Vec<usize>,
    width: usize,
}

impl ColumnMap {
    fn new(header: &[&str]) -> Self {
        let find = |names: &[&str]| -> Vec<usize> {
            names.iter().filter_map(|n| header.iter().position(|h| h.trim() == *n)).collect()
        };
        Self {
            code: header.iter().position(|h| h.trim() == "code"),
            name: find(NAME_COLUMNS),
            categories: find(CATEGORY_COLUMNS),
            nutriscore: find(NUTRISCORE_COLUMNS),
            nutrients: raw_nutrient_columns()
                .filter_map(|c| header.iter().position(|h| h.trim() == c).map(|i| (i, c)))
                .collect(),
            last_modified: find(LAST_MODIFIED_COLUMNS),
            width: header.len(),
        }
    }
}

fn first_non_empty(fields: &[&str], columns: &[usize]) -> Option<String> {
    columns.iter().filter_map(|&i| fields.get(i)).map(|v| v.trim()).find(|v| !v.is_empty()).map(str::to_string)
}

/// Checks a product code: present, short, printable, no spaces.
pub fn validate_code(code: &str) -> Result<(), Reason> {
    if code.is_empty() {
        Err(Reason::MissingCode)
    } else if code.len() > MAX_CODE_BYTES || code.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err(Reason::InvalidCode)
    } else {
        Ok(())
    }
}

/// Builds a product from delimited fields. Errors are reasons.
fn product_from_fields(
    map: &ColumnMap,
    fields: &[&str],
    default_category: Option<&str>,
) -> Result<RawProduct, (Reason, String)> {
    let code = map.code.and_then(|i| fields.get(i)).map(|c| c.trim().to_string()).unwrap_or_default();
    if fields.len() != map.width {
        return Err((Reason::ColumnCount, code));
    }
    if fields.iter().any(|f| f.len() > MAX_FIELD_BYTES) {
        return Err((Reason::FieldTooLarge, code));
    }
    validate_code(&code).map_err(|reason| (reason, code.clone()))?;
    let nutrients: BTreeMap<String, String> = map
        .nutrients
        .iter()
        .filter_map(|&(i, column)| {
            let value = fields.get(i)?.trim();
            (!value.is_empty()).then(|| (column.to_string(), value.to_string()))
        })
        .collect();
    Ok(RawProduct {
        code,
        name: first_non_empty(fields, &map.name),
        categories: first_non_empty(fields, &map.categories).or_else(|| default_category.map(str::to_string)),
        nutriscore: first_non_empty(fields, &map.nutriscore).map(|g| g.to_lowercase()),
        nutrients,
        last_modified: first_non_empty(fields, &map.last_modified).as_deref().and_then(parse_timestamp),
    })
}

/// Builds a product from a JSON object in the export's flat layout
/// (`{"code": "…", "product_name": "…", "fat_100g": 1.5, …}`) or in the
/// protocol's own (`{"code": …, "name": …, "nutrients": {…}}`).
pub fn product_from_json(value: Value, default_category: Option<&str>) -> Result<RawProduct, (Reason, String)> {
    let Value::Object(object) = value else {
        return Err((Reason::NotAnObject, String::new()));
    };
    let code = match object.get("code") {
        Some(Value::String(s)) => s.trim().to_string(),
        Some(Value::Number(n)) => n.to_string(),
        None | Some(Value::Null) => String::new(),
        Some(_) => return Err((Reason::WrongType(JsonField::Code), String::new())),
    };
    validate_code(&code).map_err(|reason| (reason, code.clone()))?;
    let text = |names: &[&str]| -> Result<Option<String>, (Reason, String)> {
        for name in names {
            match object.get(*name) {
                Some(Value::String(s)) if s.len() > MAX_FIELD_BYTES => {
                    return Err((Reason::FieldTooLarge, code.clone()))
                }
                Some(Value::String(s)) if !s.trim().is_empty() => return Ok(Some(s.trim().to_string())),
                Some(Value::Array(items)) if name.starts_with("categor") => {
                    let joined: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
                    if !joined.is_empty() {
                        return Ok(Some(joined.join(",")));
                    }
                }
                None | Some(Value::Null) | Some(Value::String(_)) => {}
                Some(_) => return Err((Reason::WrongType(JsonField::Text), code.clone())),
            }
        }
        Ok(None)
    };
    let name = text(&[NAME_COLUMNS, &["name"]].concat())?;
    let categories = text(CATEGORY_COLUMNS)?.or_else(|| default_category.map(str::to_string));
    let nutriscore = text(NUTRISCORE_COLUMNS)?.map(|g| g.to_lowercase());
    let mut nutrients = BTreeMap::new();
    let nested = match object.get("nutrients") {
        Some(Value::Object(inner)) => Some(inner),
        None | Some(Value::Null) => None,
        Some(_) => return Err((Reason::WrongType(JsonField::Nutrients), code)),
    };
    for column in raw_nutrient_columns() {
        let value = nested.and_then(|n| n.get(column)).or_else(|| object.get(column));
        let text = match value {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) if s.trim().is_empty() => continue,
            Some(Value::String(s)) if s.len() > MAX_FIELD_BYTES => return Err((Reason::FieldTooLarge, code)),
            Some(Value::String(s)) => s.trim().to_string(),
            // Numbers, booleans, arrays: their JSON text, which the mart parses or rejects.
            Some(other) => other.to_string(),
        };
        nutrients.insert(column.to_string(), text);
    }
    let last_modified = LAST_MODIFIED_COLUMNS.iter().find_map(|c| match object.get(*c) {
        Some(Value::Number(n)) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Some(Value::String(s)) => parse_timestamp(s),
        _ => None,
    });
    Ok(RawProduct { code, name, categories, nutriscore, nutrients, last_modified })
}

/// A `last_modified_t` value; one that is not a number leaves the record
/// versioned by its content (the version rule's fallback), not rejected.
fn parse_timestamp(text: &str) -> Option<i64> {
    let text = text.trim();
    text.parse::<i64>().ok().or_else(|| text.parse::<f64>().ok().filter(|f| f.is_finite()).map(|f| f as i64))
}

/// Reads one file as a stream of records. The iterator ends with an `Err`
/// rejection (`truncated_input` / `read_error`) if the file cannot be read to
/// its end; records before that point were yielded.
pub struct FileRecords {
    inner: Box<dyn Iterator<Item = SourceRecord> + Send>,
}

impl Iterator for FileRecords {
    type Item = SourceRecord;
    fn next(&mut self) -> Option<SourceRecord> {
        self.inner.next()
    }
}

fn io_rejection(e: &std::io::Error, location: String) -> Rejection {
    let reason = match e.kind() {
        std::io::ErrorKind::UnexpectedEof => Reason::TruncatedInput,
        std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput => Reason::CorruptInput,
        _ => Reason::ReadError,
    };
    Rejection { reason, code: String::new(), raw: e.to_string().into_bytes(), location }
}

/// Streams the records of `reader` (already decompressed).
pub fn read_records(
    mut reader: Box<dyn BufRead + Send>,
    label: String,
    format: Option<Format>,
    default_category: Option<String>,
) -> FileRecords {
    let format = match format {
        Some(f) => f,
        None => match reader.fill_buf() {
            Ok(buf) => Format::sniff(buf.split(|&b| b == b'\n').next().unwrap_or(buf)),
            Err(e) => return FileRecords { inner: Box::new(std::iter::once(Err(io_rejection(&e, label)))) },
        },
    };
    let inner: Box<dyn Iterator<Item = SourceRecord> + Send> = match format {
        Format::Jsonl => Box::new(jsonl_records(reader, label, default_category)),
        Format::Tsv | Format::Csv => Box::new(delimited_records(reader, label, format, default_category)),
    };
    FileRecords { inner }
}

fn jsonl_records(
    reader: Box<dyn BufRead + Send>,
    label: String,
    default_category: Option<String>,
) -> impl Iterator<Item = SourceRecord> {
    let mut lines = reader.split(b'\n').enumerate();
    let mut failed = false;
    std::iter::from_fn(move || loop {
        if failed {
            return None;
        }
        let (index, line) = lines.next()?;
        let location = format!("{label}:{}", index + 1);
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                failed = true;
                return Some(Err(io_rejection(&e, location)));
            }
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let reject = |reason: Reason, code: String, raw: Vec<u8>| {
            Some(Err(Rejection { reason, code, raw, location: location.clone() }))
        };
        if line.len() > MAX_FIELD_BYTES * 8 {
            return reject(Reason::FieldTooLarge, String::new(), line);
        }
        let value: Value = match serde_json::from_slice(&line) {
            Ok(v) => v,
            Err(e) if e.is_eof() || e.is_syntax() || e.is_data() => {
                let reason =
                    if std::str::from_utf8(&line).is_err() { Reason::InvalidUtf8 } else { Reason::MalformedJson };
                return reject(reason, String::new(), line);
            }
            Err(_) => return reject(Reason::MalformedJson, String::new(), line),
        };
        return Some(match product_from_json(value, default_category.as_deref()) {
            Ok(p) => Ok(p),
            Err((reason, code)) => Err(Rejection { reason, code, raw: line, location }),
        });
    })
}

fn delimited_records(
    reader: Box<dyn BufRead + Send>,
    label: String,
    format: Format,
    default_category: Option<String>,
) -> impl Iterator<Item = SourceRecord> {
    let mut builder = csv::ReaderBuilder::new();
    builder.has_headers(false).flexible(true);
    if format == Format::Tsv {
        // The official export is tab-separated without quoting: a quote is data.
        builder.delimiter(b'\t').quoting(false);
    }
    let mut csv = builder.from_reader(reader);
    let mut map: Option<ColumnMap> = None;
    let mut record = csv::ByteRecord::new();
    let mut done = false;
    std::iter::from_fn(move || loop {
        if done {
            return None;
        }
        let line = csv.position().line();
        let location = format!("{label}:{line}");
        match csv.read_byte_record(&mut record) {
            Ok(false) => return None,
            Ok(true) => {}
            Err(e) => {
                done = true;
                let io = match e.into_kind() {
                    csv::ErrorKind::Io(io) => io,
                    other => std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{other:?}")),
                };
                return Some(Err(io_rejection(&io, location)));
            }
        }
        let raw = || record.as_slice().to_vec();
        let fields: Result<Vec<&str>, _> = record.iter().map(std::str::from_utf8).collect();
        let Ok(mut fields) = fields else {
            if map.is_none() {
                done = true;
            }
            return Some(Err(Rejection { reason: Reason::InvalidUtf8, code: String::new(), raw: raw(), location }));
        };
        let Some(columns) = &map else {
            if let Some(first) = fields.first_mut() {
                *first = first.trim_start_matches('\u{feff}');
            }
            let columns = ColumnMap::new(&fields);
            if columns.code.is_none() {
                done = true;
                return Some(Err(Rejection {
                    reason: Reason::MissingCodeColumn,
                    code: String::new(),
                    raw: raw(),
                    location,
                }));
            }
            map = Some(columns);
            continue;
        };
        if fields.len() == 1 && fields[0].trim().is_empty() {
            continue;
        }
        return Some(match product_from_fields(columns, &fields, default_category.as_deref()) {
            Ok(p) => Ok(p),
            Err((reason, code)) => Err(Rejection { reason, code, raw: raw(), location }),
        });
    })
}

/// Reads a file by path: opens it (gzip or not), picks the format, streams
/// the records. Returns the compressed size for progress reporting and a
/// counter of bytes consumed.
pub fn read_file(
    path: &Path,
    options: &ReadOptions,
) -> std::io::Result<(FileRecords, u64, std::sync::Arc<std::sync::atomic::AtomicU64>)> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    let position = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = CountingReader { inner: file, position: position.clone() };
    let mut reader = BufReader::with_capacity(1 << 16, counted);
    let gz = reader.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn BufRead + Send> = if gz {
        Box::new(BufReader::with_capacity(1 << 16, flate2::read::MultiGzDecoder::new(reader)))
    } else {
        Box::new(reader)
    };
    let format = options.format.or_else(|| Format::from_path(path));
    let category = if options.category_from_file_name { category_from_file_name(path) } else { None };
    let label = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok((read_records(reader, label, format, category), size, position))
}

struct CountingReader<R> {
    inner: R,
    position: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.position.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// Parses a JSON object or array (an HTTP body) into records.
pub fn records_from_json_body(body: &[u8]) -> Result<Vec<SourceRecord>, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("malformed JSON: {e}"))?;
    let items = match value {
        Value::Array(items) => items,
        Value::Object(_) => vec![value],
        _ => return Err("expected a JSON object or an array of objects".into()),
    };
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let raw = serde_json::to_vec(&item).unwrap_or_default();
            product_from_json(item, None).map_err(|(reason, code)| Rejection {
                reason,
                code,
                raw,
                location: format!("item {i}"),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn records(text: &str, format: Option<Format>) -> Vec<SourceRecord> {
        read_records(Box::new(Cursor::new(text.as_bytes().to_vec())), "t".into(), format, None).collect()
    }

    #[test]
    fn reads_the_reduced_layout_by_header() {
        let text = "code\tname\tnutriscore\tenergy_100g\tfat_100g\n0012\tBread \"rustic\"\tB\t1000\t1.5\n";
        let got = records(text, None);
        let p = got[0].as_ref().unwrap();
        assert_eq!(p.code, "0012");
        assert_eq!(p.name.as_deref(), Some("Bread \"rustic\""));
        assert_eq!(p.nutriscore.as_deref(), Some("b"));
        assert_eq!(p.nutrients["fat_100g"], "1.5");
    }

    #[test]
    fn reads_the_official_layout_with_kcal_and_categories() {
        let text = "code\tproduct_name\tcategories\tpnns_groups_1\tnutriscore_grade\tenergy-kcal_100g\tsodium_100g\n1\tMuesli\tCereals,Mueslis\tCereals\ta\t380\t0.1\n";
        let p = records(text, Some(Format::Tsv)).remove(0).unwrap();
        assert_eq!(p.categories.as_deref(), Some("Cereals,Mueslis"));
        assert_eq!(p.nutrients["energy-kcal_100g"], "380");
        assert_eq!(p.nutrients["sodium_100g"], "0.1");
    }

    #[test]
    fn prefers_canonical_category_tags_and_reads_the_modification_time() {
        let text = "code\tproduct_name\tcategories\tcategories_tags\tlast_modified_t\tfat_100g\n\
                    1\tPain\tPains,Produits laitiers\ten:breads,en:dairies\t1700000000\t1\n\
                    2\tBread\tBreads\t\tnot a time\t1\n";
        let got = records(text, None);
        let first = got[0].as_ref().unwrap();
        assert_eq!(first.categories.as_deref(), Some("en:breads,en:dairies"));
        assert_eq!(first.last_modified, Some(1_700_000_000));
        assert!(first.version().starts_with("1700000000:"));
        let second = got[1].as_ref().unwrap();
        assert_eq!(second.categories.as_deref(), Some("Breads"), "free text when there are no tags");
        assert_eq!(second.last_modified, None, "an unreadable time versions the record by content");
        let json = product_from_json(serde_json::json!({"code": "3", "last_modified_t": 12}), None).unwrap();
        assert_eq!(json.last_modified, Some(12));
    }

    #[test]
    fn csv_with_quotes_and_wrong_column_counts() {
        let text = "code,product_name,fat_100g\n1,\"Choc, dark\",30\n2,short\n3,a,1,extra\n";
        let got = records(text, None);
        assert_eq!(got[0].as_ref().unwrap().name.as_deref(), Some("Choc, dark"));
        assert_eq!(got[1].as_ref().unwrap_err().reason.to_string(), "column_count");
        assert_eq!(got[2].as_ref().unwrap_err().reason.to_string(), "column_count");
        assert_eq!(got[2].as_ref().unwrap_err().code, "3");
    }

    #[test]
    fn jsonl_flat_nested_and_malformed() {
        let text = "{\"code\":\"1\",\"product_name\":\"A\",\"fat_100g\":1.5}\n\n{\"code\":2,\"nutrients\":{\"fat_100g\":\"3\"}}\nnot json\n[1]\n{\"product_name\":\"no code\"}\n";
        let got = records(text, None);
        assert_eq!(got.len(), 5);
        assert_eq!(got[0].as_ref().unwrap().nutrients["fat_100g"], "1.5");
        assert_eq!(got[1].as_ref().unwrap().code, "2");
        assert_eq!(got[2].as_ref().unwrap_err().reason.to_string(), "malformed_json");
        assert_eq!(got[3].as_ref().unwrap_err().reason.to_string(), "not_an_object");
        assert_eq!(got[4].as_ref().unwrap_err().reason.to_string(), "missing_code");
    }

    #[test]
    fn invalid_utf8_and_codes() {
        let mut bytes = b"code\tname\n1\tok\n2\t".to_vec();
        bytes.extend_from_slice(&[0xff, 0xfe, b'\n']);
        let got: Vec<_> = read_records(Box::new(Cursor::new(bytes)), "t".into(), None, None).collect();
        assert!(got[0].is_ok());
        assert_eq!(got[1].as_ref().unwrap_err().reason, Reason::InvalidUtf8);
        assert_eq!(validate_code("a b"), Err(Reason::InvalidCode));
        assert_eq!(validate_code(""), Err(Reason::MissingCode));
    }

    #[test]
    fn category_from_the_sample_file_names() {
        assert_eq!(category_from_file_name(Path::new("x/products_only_breads.tsv.gz")).as_deref(), Some("breads"));
        assert_eq!(category_from_file_name(Path::new("cookies.csv")).as_deref(), Some("cookies"));
    }

    #[test]
    fn gzip_and_truncated_gzip() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.tsv.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let mut text = String::from("code\tname\n");
        for i in 0..2000 {
            text.push_str(&format!("{i}\tproduct {i} with a longer name to make the stream bigger\n"));
        }
        gz.write_all(text.as_bytes()).unwrap();
        let bytes = gz.finish().unwrap();
        std::fs::write(&path, &bytes).unwrap();
        let (records, _, _) = read_file(&path, &ReadOptions::default()).unwrap();
        assert_eq!(records.filter(|r| r.is_ok()).count(), 2000);
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let (records, _, _) = read_file(&path, &ReadOptions::default()).unwrap();
        let all: Vec<_> = records.collect();
        let last = all.last().unwrap().as_ref().unwrap_err();
        assert_eq!(last.reason, Reason::TruncatedInput);
        assert!(all.iter().filter(|r| r.is_ok()).count() > 0);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| serde_json::json!(f)),
                any::<i64>().prop_map(|i| serde_json::json!(i)),
                ".{0,20}".prop_map(Value::String),
            ];
            leaf.prop_recursive(3, 32, 6, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    proptest::collection::btree_map(
                        prop_oneof![
                            Just("code".to_string()),
                            Just("product_name".to_string()),
                            Just("fat_100g".to_string()),
                            Just("nutrients".to_string()),
                            Just("categories".to_string()),
                            ".{0,8}"
                        ],
                        inner,
                        0..6
                    )
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            /// Any JSON value gives a product or a reason, never a panic; a
            /// product always has a valid code.
            #[test]
            fn any_json_gives_a_product_or_a_reason(value in json()) {
                if let Ok(p) = product_from_json(value, None) {
                    prop_assert!(validate_code(&p.code).is_ok());
                }
            }

            /// Any bytes, in any format, are read to the end without a panic.
            #[test]
            fn any_bytes_are_read_without_panic(
                bytes in proptest::collection::vec(any::<u8>(), 0..600),
                header in prop_oneof![Just(""), Just("code\tname\tfat_100g\n"), Just("code,product_name,fat_100g\n")],
                format in prop_oneof![Just(None), Just(Some(Format::Tsv)), Just(Some(Format::Csv)), Just(Some(Format::Jsonl))],
            ) {
                let mut input = header.as_bytes().to_vec();
                input.extend_from_slice(&bytes);
                let records: Vec<_> = read_records(Box::new(std::io::Cursor::new(input)), "p".into(), format, None).collect();
                for record in records.iter().flatten() {
                    prop_assert!(validate_code(&record.code).is_ok());
                }
            }
        }
    }
}
