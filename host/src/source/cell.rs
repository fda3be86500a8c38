//! One value of a row, typed as JSON wants it: numbers stay numbers, text stays text.

use arrow::array::{Array, AsArray};
use arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};

use super::SharedBatch;

/// A cell's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// No value.
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    UInt(u64),
    /// A float.
    Float(f64),
    /// Text (and anything else, as Arrow displays it).
    Text(String),
}

impl Cell {
    /// The value as a JSON value of the same type.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Cell::Null => serde_json::Value::Null,
            Cell::Bool(b) => (*b).into(),
            Cell::Int(i) => (*i).into(),
            Cell::UInt(u) => (*u).into(),
            Cell::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into)
            }
            Cell::Text(s) => s.as_str().into(),
        }
    }

    /// The value as text (URL paths, query strings, ids); `None` for null.
    pub fn to_text(&self) -> Option<String> {
        Some(match self {
            Cell::Null => return None,
            Cell::Bool(b) => b.to_string(),
            Cell::Int(i) => i.to_string(),
            Cell::UInt(u) => u.to_string(),
            Cell::Float(f) => f.to_string(),
            Cell::Text(s) => s.clone(),
        })
    }
}

/// Reads the cell at `row` of `array`.
pub(crate) fn cell(array: &dyn Array, row: usize) -> Cell {
    if array.is_null(row) {
        return Cell::Null;
    }
    match array.data_type() {
        DataType::Boolean => Cell::Bool(array.as_boolean().value(row)),
        DataType::Int8 => Cell::Int(array.as_primitive::<Int8Type>().value(row).into()),
        DataType::Int16 => Cell::Int(array.as_primitive::<Int16Type>().value(row).into()),
        DataType::Int32 => Cell::Int(array.as_primitive::<Int32Type>().value(row).into()),
        DataType::Int64 => Cell::Int(array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => Cell::UInt(array.as_primitive::<UInt8Type>().value(row).into()),
        DataType::UInt16 => Cell::UInt(array.as_primitive::<UInt16Type>().value(row).into()),
        DataType::UInt32 => Cell::UInt(array.as_primitive::<UInt32Type>().value(row).into()),
        DataType::UInt64 => Cell::UInt(array.as_primitive::<UInt64Type>().value(row)),
        DataType::Float32 => Cell::Float(array.as_primitive::<Float32Type>().value(row).into()),
        DataType::Float64 => Cell::Float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => Cell::Text(array.as_string::<i32>().value(row).to_owned()),
        DataType::LargeUtf8 => Cell::Text(array.as_string::<i64>().value(row).to_owned()),
        DataType::Utf8View => Cell::Text(array.as_string_view().value(row).to_owned()),
        _ => match ArrayFormatter::try_new(array, &FormatOptions::default()) {
            Ok(f) => Cell::Text(f.value(row).to_string()),
            Err(e) => Cell::Text(format!("<unreadable {}: {e}>", array.data_type())),
        },
    }
}

/// One row of a shared batch.
#[derive(Clone)]
pub struct RowView {
    /// The batch the row is in.
    pub batch: SharedBatch,
    /// Its index in the batch.
    pub row: usize,
}

impl RowView {
    /// The value in `column`.
    pub fn cell(&self, column: usize) -> Cell {
        cell(self.batch.column(column).as_ref(), self.row)
    }

    /// A digest of every column's name, type and value: the row's identity when there is no id_column.
    /// Stable across runs, sources and versions (xxh3-128 over a fixed encoding), as 32 hex digits.
    pub fn content_hash(&self) -> String {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for (i, field) in self.batch.schema_ref().fields().iter().enumerate() {
            h.update(field.name().as_bytes());
            h.update(&[0x1f]);
            match self.cell(i) {
                Cell::Null => h.update(&[0]),
                Cell::Bool(b) => h.update(&[1, b as u8]),
                Cell::Int(v) => h.update(&[&[2u8][..], &v.to_le_bytes()].concat()),
                Cell::UInt(v) => h.update(&[&[3u8][..], &v.to_le_bytes()].concat()),
                Cell::Float(v) => h.update(&[&[4u8][..], &v.to_le_bytes()].concat()),
                Cell::Text(s) => {
                    h.update(&[5]);
                    h.update(s.as_bytes());
                }
            }
            h.update(&[0x1e]);
        }
        format!("{:032x}", h.digest128())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, Int64Array, StringArray};
    use arrow::record_batch::RecordBatch;

    use super::*;

    fn batch() -> SharedBatch {
        Arc::new(
            RecordBatch::try_from_iter([
                ("id", Arc::new(Int64Array::from(vec![Some(1), None])) as _),
                ("name", Arc::new(StringArray::from(vec!["a b", "c"])) as _),
                ("score", Arc::new(Float64Array::from(vec![1.5, 2.0])) as _),
            ])
            .unwrap(),
        )
    }

    #[test]
    fn cells_keep_their_types() {
        let row = RowView {
            batch: batch(),
            row: 0,
        };
        assert_eq!(row.cell(0).to_json(), serde_json::json!(1));
        assert_eq!(row.cell(1).to_json(), serde_json::json!("a b"));
        assert_eq!(row.cell(2).to_json(), serde_json::json!(1.5));
        assert_eq!(
            RowView {
                batch: batch(),
                row: 1
            }
            .cell(0),
            Cell::Null
        );
    }

    #[test]
    fn content_hash_is_stable_and_distinguishes_rows() {
        let a = RowView {
            batch: batch(),
            row: 0,
        }
        .content_hash();
        assert_eq!(
            a,
            RowView {
                batch: batch(),
                row: 0
            }
            .content_hash()
        );
        assert_ne!(
            a,
            RowView {
                batch: batch(),
                row: 1
            }
            .content_hash()
        );
        assert_eq!(a.len(), 32);
    }
}
