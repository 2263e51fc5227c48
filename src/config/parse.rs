//! Walks the TOML document by hand (toml's `DeTable` keeps every key's and value's span), so
//! every problem can name its key path and line, all problems are reported at once, and no
//! value is echoed unless it is safe to show.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use super::formats::{self, edit_distance};
use super::{
    CheckMode, ChecksConfig, Cidr, CloneMode, ClonesPerStorage, Config, ConfigError, ConfigSource,
    OutputConfig, Placement, Problem, ProxmoxConfig, RolloutConfig, TemplateRef, VmOverrides,
    VmSpec,
};

mod checks;
mod commands;
mod disks;
mod guest;
mod network;
mod output;
mod proxmox;
mod rollout;
mod vm_spec;

pub(super) use checks::CHECKS_KEYS;
#[cfg(test)]
pub(super) use commands::EXEC_CHECK_KEYS;
pub(super) use commands::HOOKS_KEYS;
#[cfg(test)]
pub(super) use network::NIC_KEYS;
pub(super) use output::OUTPUT_KEYS;
pub(super) use proxmox::PROXMOX_KEYS;
pub(super) use rollout::ROLLOUT_KEYS;
pub(super) use vm_spec::{SPEC_KEYS, VM_ONLY_KEYS};

type Value<'i> = toml::Spanned<DeValue<'i>>;

const SECTIONS: &[(&str, &[&str])] = &[
    ("proxmox", PROXMOX_KEYS),
    ("rollout", ROLLOUT_KEYS),
    ("defaults", SPEC_KEYS),
    ("vm_configs", &[]),
    ("checks", CHECKS_KEYS),
    ("hooks", HOOKS_KEYS),
    ("output", OUTPUT_KEYS),
];
/// Keys people reach for to put a secret inline; refused without echoing the value.
const SECRET_LOOKING_KEYS: &[&str] = &[
    "token_secret",
    "secret",
    "password",
    "token",
    "api_token",
    "token_value",
    "pass",
];

pub const DEFAULT_MAX_VMS: u64 = 50;
const VMID_MIN: i64 = 100;
const VMID_MAX: i64 = 999_999_999;

/// What went wrong with one value, before the key and line are attached.
struct Bad {
    message: String,
    hint: Option<String>,
    /// The value must not be shown (it carries a credential).
    hidden: bool,
}

fn bad(message: impl Into<String>) -> Bad {
    Bad {
        message: message.into(),
        hint: None,
        hidden: false,
    }
}

fn bad_hint(message: impl Into<String>, hint: impl Into<String>) -> Bad {
    Bad {
        message: message.into(),
        hint: Some(hint.into()),
        hidden: false,
    }
}

fn type_name(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

fn expected(what: &str, found: &DeValue<'_>) -> Bad {
    bad(format!("expected {what}, found {}", type_name(found)))
}

fn integer_of(value: &DeValue<'_>) -> Option<i128> {
    let int = value.as_integer()?;
    i128::from_str_radix(int.as_str(), int.radix()).ok()
}

/// A key path segment as TOML would write it: bare when it can be, quoted otherwise.
fn key_segment(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
    if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

/// One table of the document, with its dotted path and where its header is.
struct Section<'a, 'i> {
    path: String,
    table: Option<&'a DeTable<'i>>,
    line: Option<usize>,
}

impl<'a, 'i> Section<'a, 'i> {
    fn get(&self, key: &str) -> Option<&'a Value<'i>> {
        self.table?.get(key)
    }

    fn key_path(&self, key: &str) -> String {
        format!("{}.{}", self.path, key_segment(key))
    }
}

struct Doc<'s> {
    src: &'s str,
    origin: &'s str,
    base: Option<&'s Path>,
    problems: Vec<Problem>,
    key_lines: BTreeMap<String, usize>,
    warnings: Vec<String>,
}

impl<'s> Doc<'s> {
    fn line(&self, offset: usize) -> usize {
        line_at(self.src, offset)
    }

    /// The value as written, on one line and shortened.
    fn shown(&self, span: Range<usize>) -> Option<String> {
        let text = self.src.get(span)?;
        let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        Some(if one_line.chars().count() > 60 {
            format!("{}...", one_line.chars().take(57).collect::<String>())
        } else {
            one_line
        })
    }

    fn push(&mut self, key: Option<String>, line: Option<usize>, value: Option<String>, b: Bad) {
        self.problems.push(Problem {
            key,
            line,
            value,
            message: b.message,
            hint: b.hint,
        });
    }

    /// A problem with a value that is safe to show.
    fn at_value(&mut self, key: String, value: &Value<'_>, b: Bad) {
        let line = self.line(value.span().start);
        let shown = if b.hidden {
            None
        } else {
            self.shown(value.span())
        };
        self.push(Some(key), Some(line), shown, b);
    }

    /// A problem with a key that must be there but is not.
    fn missing(&mut self, key: String, line: Option<usize>, hint: impl Into<String>) {
        self.push(Some(key), line, None, bad_hint("is missing", hint));
    }

    /// Reads `key` of `section` with `convert`; records its line; reports a bad value.
    fn field<T>(
        &mut self,
        section: &Section<'_, '_>,
        key: &str,
        convert: impl FnOnce(&DeValue<'_>) -> Result<T, Bad>,
    ) -> Option<T> {
        let value = section.get(key)?;
        let path = section.key_path(key);
        self.key_lines
            .insert(path.clone(), self.line(value.span().start));
        match convert(value.get_ref()) {
            Ok(v) => Some(v),
            Err(b) => {
                self.at_value(path, value, b);
                None
            }
        }
    }

    fn string_with<T>(
        &mut self,
        section: &Section<'_, '_>,
        key: &str,
        what: &str,
        check: impl FnOnce(&str) -> Result<T, Bad>,
    ) -> Option<T> {
        self.field(section, key, |v| match v.as_str() {
            Some(s) => check(s),
            None => Err(expected(what, v)),
        })
    }

    /// A string checked by a `formats` function that says what is allowed.
    fn checked_string(
        &mut self,
        section: &Section<'_, '_>,
        key: &str,
        what: &str,
        check: fn(&str) -> Result<(), String>,
    ) -> Option<String> {
        self.string_with(section, key, what, |s| {
            check(s)
                .map(|()| s.to_string())
                .map_err(|allowed| bad(format!("not allowed; expected {allowed}")))
        })
    }

    fn boolean(&mut self, section: &Section<'_, '_>, key: &str) -> Option<bool> {
        self.field(section, key, |v| match v {
            DeValue::Boolean(b) => Ok(*b),
            DeValue::String(s) if matches!(s.as_ref(), "true" | "false") => Err(bad_hint(
                "expected a boolean, found a string",
                format!("write {s} without quotes"),
            )),
            other => Err(expected("true or false", other)),
        })
    }

    fn integer(
        &mut self,
        section: &Section<'_, '_>,
        key: &str,
        min: i64,
        max: i64,
        hint: Option<&str>,
    ) -> Option<i64> {
        self.field(section, key, |v| {
            let n = match (v, integer_of(v)) {
                (_, Some(n)) => n,
                (DeValue::String(s), None) if s.trim().parse::<i64>().is_ok() => {
                    return Err(bad_hint(
                        "expected an integer, found a string",
                        format!("write {} without quotes", s.trim()),
                    ));
                }
                (other, None) => return Err(expected("an integer", other)),
            };
            if n < i128::from(min) || n > i128::from(max) {
                Err(Bad {
                    message: format!("out of range; allowed: {min} to {max}"),
                    hint: hint.map(str::to_string),
                    hidden: false,
                })
            } else {
                // In range, so it fits.
                Ok(n as i64)
            }
        })
    }

    fn duration(
        &mut self,
        section: &Section<'_, '_>,
        key: &str,
        nonzero: bool,
    ) -> Option<Duration> {
        self.field(section, key, |v| match v {
            DeValue::String(s) => {
                let d = formats::parse_duration(s)
                    .map_err(|allowed| bad(format!("not a duration; expected {allowed}")))?;
                if nonzero && d.is_zero() {
                    Err(bad_hint(
                        "must be longer than zero",
                        "give the phase time to finish, such as \"5m\"",
                    ))
                } else {
                    Ok(d)
                }
            }
            DeValue::Integer(i) => Err(bad_hint(
                "expected a duration string, found an integer",
                format!("write \"{}s\" for seconds (or \"{}m\" for minutes)", i, i),
            )),
            other => Err(expected("a duration such as \"30s\" or \"30m\"", other)),
        })
    }

    fn path(&mut self, section: &Section<'_, '_>, key: &str) -> Option<PathBuf> {
        let base = self.base;
        self.string_with(section, key, "a file path", |s| {
            if s.trim().is_empty() {
                return Err(bad("must not be empty; expected a file path"));
            }
            // `~/` is what people write for their home; expand it as a shell would.
            let p = match (s.strip_prefix("~/"), std::env::var_os("HOME")) {
                (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
                _ => PathBuf::from(s),
            };
            Ok(match base {
                Some(base) if p.is_relative() => base.join(p),
                _ => p,
            })
        })
    }

    /// Reports keys of `section` that are not in `allowed`, never echoing their values.
    fn unknown_keys(&mut self, section: &Section<'_, '_>, allowed: &[&str]) {
        let Some(table) = section.table else { return };
        for (key, _) in table.iter() {
            let name: &str = key.get_ref();
            if allowed.contains(&name) {
                continue;
            }
            let line = self.line(key.span().start);
            let hint = unknown_key_hint(&section.path, name, allowed);
            self.push(
                Some(section.key_path(name)),
                Some(line),
                None,
                bad_hint("unknown key", hint),
            );
        }
    }

    fn section<'a, 'i>(&mut self, root: &'a DeTable<'i>, name: &str) -> Section<'a, 'i> {
        let mut section = Section {
            path: name.to_string(),
            table: None,
            line: None,
        };
        if let Some(value) = root.get(name) {
            section.line = Some(self.line(value.span().start));
            match value.get_ref() {
                DeValue::Table(t) => section.table = Some(t),
                other => self.at_value(
                    name.to_string(),
                    value,
                    Bad {
                        hidden: true,
                        ..bad_hint(
                            format!("expected a table, found {}", type_name(other)),
                            format!("write it as one [{name}] section"),
                        )
                    },
                ),
            }
        }
        section
    }
}

impl Doc<'_> {
    /// The whole document: every section read (all problems collected), then combined.
    fn config(&mut self, root: &DeTable<'_>) -> Option<Config> {
        for (key, _) in root.iter() {
            let name: &str = key.get_ref();
            if !SECTIONS.iter().any(|(s, _)| *s == name) {
                let line = self.line(key.span().start);
                let hint = unknown_key_hint("", name, &[]);
                self.push(
                    Some(key_segment(name)),
                    Some(line),
                    None,
                    bad_hint("unknown top-level key", hint),
                );
            }
        }

        let proxmox = self.proxmox(root);
        let rollout = self.rollout(root);
        let defaults_section = self.section(root, "defaults");
        let defaults = self.defaults(&defaults_section);
        let vm_configs = self.vm_configs(root, rollout.as_ref().map(|r| r.config.nodes.as_slice()));
        let checks = self.checks(root);
        let hooks = self.hooks(root);
        let output = self.output(root);
        let mut rollout = rollout?;
        let vm_configs = vm_configs?;
        let checks = checks?;
        self.exec_check_clashes(&checks.exec, &vm_configs);
        if let Some(defaults) = &defaults {
            self.disk_slot_clashes(defaults, &vm_configs);
        }
        self.vm_list(&mut rollout, &vm_configs);
        Some(Config {
            proxmox: proxmox?,
            rollout: rollout.config,
            defaults: defaults?,
            vm_configs,
            checks,
            hooks: hooks?,
            output: output?,
            source: ConfigSource {
                origin: self.origin.to_string(),
                key_lines: std::mem::take(&mut self.key_lines),
                warnings: std::mem::take(&mut self.warnings),
            },
        })
    }
}

fn unknown_key_hint(section: &str, key: &str, allowed: &[&str]) -> String {
    if SECRET_LOOKING_KEYS.contains(&key) {
        return "secrets are never read from deploy.toml: put the token secret in a file only you \
                can read (chmod 600) and set proxmox.token_secret_file, or set env \
                PVE_TOKEN_SECRET (for a password: password_file or env PVE_PASSWORD)"
            .to_string();
    }
    if let Some((home, _)) = SECTIONS
        .iter()
        .find(|(s, keys)| *s != section && keys.contains(&key))
    {
        return format!("`{key}` belongs in [{home}]");
    }
    if (section == "defaults" || section.starts_with("vm_configs."))
        && network::NIC_KEYS.contains(&key)
    {
        return format!(
            "`{key}` is set per NIC: write networks = [{{ bridge = \"vmbr1\", {key} = ... }}]"
        );
    }
    if section != "vm_configs" && VM_ONLY_KEYS.contains(&key) {
        return format!("`{key}` pins one VM: set it under [vm_configs.\"<name>\"]");
    }
    if allowed.is_empty() {
        return format!(
            "top-level sections are {}",
            SECTIONS
                .iter()
                .map(|(s, _)| format!("[{s}]"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let closest = allowed
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .min()
        .filter(|(d, k)| *d <= 2.max(k.len() / 4));
    match closest {
        Some((_, k)) => format!("did you mean `{k}`?"),
        None => format!("keys allowed in [{section}]: {}", allowed.join(", ")),
    }
}

/// 1-based line of a byte offset.
fn line_at(src: &str, offset: usize) -> usize {
    let end = offset.min(src.len());
    1 + src.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
}

pub fn parse(text: &str, origin: &str, base: Option<&Path>) -> Result<Config, ConfigError> {
    let root = toml::de::DeTable::parse(text).map_err(|e| {
        // toml's Display quotes the offending line, which could hold a secret; use only its
        // message and position.
        let line = e.span().map(|span| line_at(text, span.start));
        ConfigError::single(
            origin,
            Problem {
                key: None,
                line,
                value: None,
                message: format!("not valid TOML: {}", e.message()),
                hint: Some("fix the syntax (deploy.toml.example shows every key)".to_string()),
            },
        )
    })?;
    let mut doc = Doc {
        src: text,
        origin,
        base,
        problems: Vec::new(),
        key_lines: BTreeMap::new(),
        warnings: Vec::new(),
    };
    let config = doc.config(root.get_ref());
    doc.problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
    match config {
        Some(config) if doc.problems.is_empty() => Ok(config),
        _ => Err(ConfigError {
            origin: origin.to_string(),
            problems: if doc.problems.is_empty() {
                // Unreachable by construction, but never claim success without a config.
                vec![Problem {
                    key: None,
                    line: None,
                    value: None,
                    message: "the config could not be read".to_string(),
                    hint: None,
                }]
            } else {
                doc.problems
            },
        }),
    }
}
