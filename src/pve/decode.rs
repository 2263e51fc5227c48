//! Lenient deserializers for what PVE really sends: Perl scalars come out as strings or numbers
//! depending on their last use (`"100"` for nextid, `"memory":"2048"`), booleans as 0/1 (or
//! `"0"`/`"1"`, or real JSON booleans passed through from QGA), and optional keys are simply absent.
//! Absent or `null` means "not set"; a value of the wrong shape is a decode error.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// An unsigned integer from a number or a numeric string.
pub(crate) fn value_to_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| *f >= 0.0 && f.fract() == 0.0 && *f < 1.8e19)
                .map(|f| f as u64)
        }),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<u64>().ok().or_else(|| {
                s.parse::<f64>()
                    .ok()
                    .filter(|f| *f >= 0.0 && f.fract() == 0.0 && *f < 1.8e19)
                    .map(|f| f as u64)
            })
        }
        _ => None,
    }
}

fn value_to_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// 0/1, "0"/"1", true/false, "true"/"false"; `None` for anything else.
pub(crate) fn value_to_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_f64().map(|f| f != 0.0),
        Value::String(s) => match s.trim() {
            "1" | "true" | "on" | "yes" => Some(true),
            "0" | "false" | "off" | "no" | "" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Config values as text: strings as they are, numbers as written, booleans as 0/1.
pub(crate) fn value_to_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "1" } else { "0" }.to_string()),
        other => Some(other.to_string()),
    }
}

fn shape_error<E: serde::de::Error>(what: &str, value: &Value) -> E {
    E::custom(format!("expected {what}, got {value}"))
}

pub(crate) fn u64_req<'de, D: Deserializer<'de>>(de: D) -> Result<u64, D::Error> {
    let value = Value::deserialize(de)?;
    value_to_u64(&value).ok_or_else(|| shape_error("an unsigned integer", &value))
}

pub(crate) fn u32_req<'de, D: Deserializer<'de>>(de: D) -> Result<u32, D::Error> {
    let value = Value::deserialize(de)?;
    value_to_u64(&value)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| shape_error("a 32-bit unsigned integer", &value))
}

pub(crate) fn u64_opt<'de, D: Deserializer<'de>>(de: D) -> Result<Option<u64>, D::Error> {
    match Value::deserialize(de)? {
        Value::Null => Ok(None),
        value => value_to_u64(&value)
            .map(Some)
            .ok_or_else(|| shape_error("an unsigned integer", &value)),
    }
}

pub(crate) fn u32_opt<'de, D: Deserializer<'de>>(de: D) -> Result<Option<u32>, D::Error> {
    Ok(match u64_opt(de)? {
        None => None,
        Some(n) => {
            Some(u32::try_from(n).map_err(|_| D::Error::custom(format!("{n} is too large")))?)
        }
    })
}

pub(crate) fn u8_opt<'de, D: Deserializer<'de>>(de: D) -> Result<Option<u8>, D::Error> {
    Ok(match u64_opt(de)? {
        None => None,
        Some(n) => {
            Some(u8::try_from(n).map_err(|_| D::Error::custom(format!("{n} is too large")))?)
        }
    })
}

pub(crate) fn i64_opt<'de, D: Deserializer<'de>>(de: D) -> Result<Option<i64>, D::Error> {
    match Value::deserialize(de)? {
        Value::Null => Ok(None),
        value => value_to_i64(&value)
            .map(Some)
            .ok_or_else(|| shape_error("an integer", &value)),
    }
}

/// Absent or null is false.
pub(crate) fn bool_lenient<'de, D: Deserializer<'de>>(de: D) -> Result<bool, D::Error> {
    match Value::deserialize(de)? {
        Value::Null => Ok(false),
        value => value_to_bool(&value).ok_or_else(|| shape_error("a boolean (0/1)", &value)),
    }
}

/// A string, or a number rendered as text (`"id":"9000"` and `"id":9000` alike).
pub(crate) fn string_opt<'de, D: Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    match Value::deserialize(de)? {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        Value::Number(n) => Ok(Some(n.to_string())),
        value => Err(shape_error("a string", &value)),
    }
}

pub(crate) fn string_req<'de, D: Deserializer<'de>>(de: D) -> Result<String, D::Error> {
    string_opt(de)?.ok_or_else(|| D::Error::custom("expected a string, got null"))
}

/// A string that may be absent or null (empty then).
pub(crate) fn string_or_empty<'de, D: Deserializer<'de>>(de: D) -> Result<String, D::Error> {
    Ok(string_opt(de)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_arrive_as_numbers_or_strings() {
        assert_eq!(value_to_u64(&json!(100)), Some(100));
        assert_eq!(value_to_u64(&json!("100")), Some(100));
        assert_eq!(value_to_u64(&json!(" 2048 ")), Some(2048));
        assert_eq!(value_to_u64(&json!(4.0)), Some(4));
        assert_eq!(value_to_u64(&json!(4.5)), None);
        assert_eq!(value_to_u64(&json!("x")), None);
        assert_eq!(value_to_u64(&json!(-1)), None);
    }

    #[test]
    fn booleans_arrive_in_every_spelling() {
        for yes in [json!(1), json!("1"), json!(true), json!("true")] {
            assert_eq!(value_to_bool(&yes), Some(true), "{yes}");
        }
        for no in [json!(0), json!("0"), json!(false), json!("false")] {
            assert_eq!(value_to_bool(&no), Some(false), "{no}");
        }
        assert_eq!(value_to_bool(&json!("maybe")), None);
    }

    #[test]
    fn config_values_render_as_text() {
        assert_eq!(value_to_text(&json!(2)).as_deref(), Some("2"));
        assert_eq!(value_to_text(&json!("2048")).as_deref(), Some("2048"));
        assert_eq!(value_to_text(&json!(true)).as_deref(), Some("1"));
        assert_eq!(value_to_text(&Value::Null), None);
    }
}
