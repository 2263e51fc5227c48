//! Request parameters as pve-http-server decodes them (form or JSON body, query merged over it,
//! `&` and `;` separators, repeated keys), and JSON-schema style validation with PVE's messages.

use indexmap::IndexMap;
use percent_encoding::percent_decode_str;
use serde_json::Value;

use super::envelope::ApiError;

/// Decoded parameters; a repeated key keeps every value in order.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Params {
    map: IndexMap<String, Vec<String>>,
}

/// `+` → space, then percent-decoding (invalid UTF-8 is replaced, as Perl would mangle it).
pub fn form_unescape(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_decode_str(&s).decode_utf8_lossy().into_owned()
}

/// Percent-decoding only (URI components, cookies, `urlencoded` config values).
pub fn uri_unescape(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

impl Params {
    pub fn new() -> Params {
        Params::default()
    }

    /// Parses `a=1&b=2;c=3`.
    pub fn from_form(s: &str) -> Params {
        let mut p = Params::new();
        for pair in s.split(['&', ';']) {
            if pair.is_empty() {
                continue;
            }
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            p.push(form_unescape(k), form_unescape(v));
        }
        p
    }

    /// A JSON object body: booleans become 1/0, arrays repeated values, `null` is dropped.
    pub fn from_json(v: &Value) -> Option<Params> {
        let obj = v.as_object()?;
        let mut p = Params::new();
        for (k, v) in obj {
            let mut add = |v: &Value| match v {
                Value::Null => {}
                Value::Bool(b) => p.push(k.clone(), if *b { "1" } else { "0" }.into()),
                Value::String(s) => p.push(k.clone(), s.clone()),
                other => p.push(k.clone(), other.to_string()),
            };
            match v {
                Value::Array(items) => items.iter().for_each(&mut add),
                other => add(other),
            }
        }
        Some(p)
    }

    pub fn push(&mut self, k: String, v: String) {
        self.map.entry(k).or_default().push(v);
    }

    pub fn set(&mut self, k: &str, v: String) {
        self.map.insert(k.to_string(), vec![v]);
    }

    /// Query parameters override body keys.
    pub fn override_with(&mut self, other: Params) {
        for (k, v) in other.map {
            self.map.insert(k, v);
        }
    }

    /// The value of a scalar parameter (repeated values are NUL-joined, as the form decoder does).
    pub fn get(&self, k: &str) -> Option<String> {
        self.map.get(k).map(|v| v.join("\0"))
    }

    pub fn has(&self, k: &str) -> bool {
        self.map.contains_key(k)
    }

    pub fn values(&self, k: &str) -> &[String] {
        self.map.get(k).map(|v| v.as_slice()).unwrap_or(&[])
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(|k| k.as_str())
    }

    pub fn int(&self, k: &str) -> Option<i64> {
        self.get(k).and_then(|v| v.parse().ok())
    }

    pub fn flag(&self, k: &str) -> bool {
        self.get(k).as_deref() == Some("1")
    }
}

/// A parameter's schema type.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Int {
        min: Option<i64>,
        max: Option<i64>,
    },
    Bool,
    Vmid,
    Node,
    StorageId,
    DnsName,
    Str {
        max_len: Option<usize>,
    },
    Enum(&'static [&'static str]),
    /// An `array` parameter: a scalar becomes a one-element array.
    Array,
    /// A string matching a pattern (`value does not match the regex pattern`).
    Pattern(fn(&str) -> bool),
}

pub const INT: Kind = Kind::Int {
    min: None,
    max: None,
};
pub const STR: Kind = Kind::Str { max_len: None };

#[derive(Debug, Clone, Copy)]
pub struct P {
    pub name: &'static str,
    pub kind: Kind,
    pub optional: bool,
}

pub const fn req(name: &'static str, kind: Kind) -> P {
    P {
        name,
        kind,
        optional: false,
    }
}

pub const fn opt(name: &'static str, kind: Kind) -> P {
    P {
        name,
        kind,
        optional: true,
    }
}

pub fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

pub fn is_node_name(s: &str) -> bool {
    is_label(s)
}

pub fn is_dns_name(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(is_label)
}

pub fn is_storage_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphabetic()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

pub fn is_int(s: &str) -> bool {
    let d = s.strip_prefix('-').unwrap_or(s);
    !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit())
}

/// Checks one value; `Err` is the message PVE would put under the parameter's name.
pub fn check_value(kind: Kind, v: &str) -> Result<(), String> {
    match kind {
        Kind::Int { min, max } => {
            if !is_int(v) {
                return Err(format!("type check ('integer') failed - got '{v}'"));
            }
            let n: i128 = v
                .parse()
                .map_err(|_| format!("type check ('integer') failed - got '{v}'"))?;
            if let Some(m) = min
                && n < m as i128
            {
                return Err(format!("value must have a minimum value of {m}"));
            }
            if let Some(m) = max
                && n > m as i128
            {
                return Err(format!("value must have a maximum value of {m}"));
            }
            Ok(())
        }
        Kind::Bool => {
            if v == "0" || v == "1" {
                Ok(())
            } else {
                Err(format!("type check ('boolean') failed - got '{v}'"))
            }
        }
        Kind::Vmid => {
            if !is_int(v) {
                return Err(format!("type check ('integer') failed - got '{v}'"));
            }
            let b = v.as_bytes();
            if b[0] == b'0' || b[0] == b'-' || !(3..=9).contains(&b.len()) {
                return Err("invalid format - value does not look like a valid VM ID\n".into());
            }
            Ok(())
        }
        Kind::Node => {
            if is_node_name(v) {
                Ok(())
            } else {
                Err("invalid format - value does not look like a valid node name\n".into())
            }
        }
        Kind::StorageId => {
            if is_storage_id(v) {
                Ok(())
            } else {
                Err(format!(
                    "invalid format - storage ID '{v}' contains illegal characters\n"
                ))
            }
        }
        Kind::DnsName => {
            if is_dns_name(v) {
                Ok(())
            } else {
                Err("invalid format - value does not look like a valid DNS name\n".into())
            }
        }
        Kind::Str { max_len } => match max_len {
            Some(m) if v.chars().count() > m => {
                Err(format!("value may only be {m} characters long"))
            }
            _ => Ok(()),
        },
        Kind::Enum(allowed) => {
            if allowed.contains(&v) {
                Ok(())
            } else {
                Err(format!(
                    "value '{v}' does not have a value in the enumeration '{}'",
                    allowed.join(", ")
                ))
            }
        }
        Kind::Array => Ok(()),
        Kind::Pattern(f) => {
            if f(v) {
                Ok(())
            } else {
                Err("value does not match the regex pattern".into())
            }
        }
    }
}

/// Validates `params` against `schema` (which lists path parameters too). Extra keys are errors.
pub fn validate(params: &Params, schema: &[P]) -> Result<(), ApiError> {
    let mut errors: IndexMap<String, String> = IndexMap::new();
    for k in params.keys() {
        if !schema.iter().any(|p| p.name == k) {
            errors.insert(
                k.to_string(),
                "property is not defined in schema and the schema does not allow additional properties".into(),
            );
        }
    }
    for p in schema {
        match params.get(p.name) {
            None => {
                if !p.optional {
                    errors.insert(
                        p.name.into(),
                        "property is missing and it is not optional".into(),
                    );
                }
            }
            Some(v) => {
                if let Kind::Array = p.kind {
                    continue;
                }
                if let Err(e) = check_value(p.kind, &v) {
                    errors.insert(p.name.into(), e);
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Params(errors))
    }
}

/// The `node` and `vmid` path parameters, in every schema that has them.
pub const NODE: P = req("node", Kind::Node);
pub const VMID: P = req("vmid", Kind::Vmid);

/// The `vmid` path parameter (already validated by the schema).
pub fn vmid_of(p: &Params) -> u32 {
    p.get("vmid").and_then(|v| v.parse().ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding_splits_on_amp_and_semicolon_and_keeps_repeats() {
        let p = Params::from_form("command=ls&command=-la;x=a+b%20c");
        assert_eq!(p.values("command"), ["ls", "-la"]);
        assert_eq!(p.get("x").as_deref(), Some("a b c"));
    }

    #[test]
    fn vmid_messages_match_pve() {
        assert_eq!(
            check_value(Kind::Vmid, "abc").unwrap_err(),
            "type check ('integer') failed - got 'abc'"
        );
        assert_eq!(
            check_value(Kind::Vmid, "99").unwrap_err(),
            "invalid format - value does not look like a valid VM ID\n"
        );
        assert!(check_value(Kind::Vmid, "100").is_ok());
        assert_eq!(
            check_value(Kind::Bool, "true").unwrap_err(),
            "type check ('boolean') failed - got 'true'"
        );
    }

    #[test]
    fn unknown_and_missing_properties_are_reported() {
        let p = Params::from_form("foo=1");
        let Err(ApiError::Params(e)) = validate(&p, &[req("newid", Kind::Vmid)]) else {
            panic!()
        };
        assert_eq!(
            e["foo"],
            "property is not defined in schema and the schema does not allow additional properties"
        );
        assert_eq!(e["newid"], "property is missing and it is not optional");
    }
}
