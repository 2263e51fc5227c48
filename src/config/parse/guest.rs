//! The guest settings of `[defaults]` and `[vm_configs."name"]`: `ciupgrade`, `pool`, `tags`,
//! `description`, `onboot`, `startup`, `cpu`, `balloon`. Unset keys keep the template's value.

use toml::de::DeValue;

use super::*;
use crate::config::GuestSettings;
use crate::pve::Startup;

impl Doc<'_> {
    /// `None` when one of the keys was bad (the problem is recorded).
    pub(super) fn guest(&mut self, s: &Section<'_, '_>) -> Option<GuestSettings> {
        let before = self.problems.len();
        let ciupgrade = self.boolean(s, "ciupgrade");
        let onboot = self.boolean(s, "onboot");
        let pool = self.string_with(s, "pool", "a pool id", |p| {
            // PVE's `pve-poolid`: `[A-Za-z0-9_][A-Za-z0-9_\-]*` (a `/` nests pools).
            let ok = p.split('/').all(|part| {
                part.bytes()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
                    && part
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
            });
            ok.then(|| p.to_string()).ok_or_else(|| {
                bad("not a pool id; expected letters, digits, '_' and '-' (not first)")
            })
        });
        let tags = self.field(s, "tags", |v| {
            let DeValue::Array(items) = v else {
                return Err(bad_hint(
                    format!("expected an array of tags, found {}", type_name(v)),
                    "write tags = [\"web\", \"prod\"]",
                ));
            };
            let mut out: Vec<String> = Vec::new();
            for item in items.iter() {
                let Some(tag) = item.get_ref().as_str() else {
                    return Err(expected("tags (strings)", item.get_ref()));
                };
                // PVE's `pve-tag`: `[a-z0-9_][a-z0-9_\-+.]*`, case-insensitive; written lowercase
                // here so the same tag is not listed twice.
                let lower = tag.to_ascii_lowercase();
                let ok = lower
                    .bytes()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
                    && lower.bytes().all(|c| {
                        c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'+' | b'.')
                    });
                if !ok {
                    return Err(bad_hint(
                        format!("\"{tag}\" is not a PVE tag"),
                        "tags are letters, digits, '_', '-', '+', '.', starting with a letter, digit or '_'",
                    ));
                }
                if !out.contains(&lower) {
                    out.push(lower);
                }
            }
            Ok(out)
        });
        let description = self.string_with(s, "description", "text", |d| Ok(d.to_string()));
        let startup = self.string_with(s, "startup", "a startup order", |text| {
            Startup::parse(text).ok_or_else(|| {
                bad_hint(
                    "not a startup order",
                    "write startup = \"order=2,up=30\" (order, up and down are whole numbers)",
                )
            })
        });
        let cpu = self.string_with(s, "cpu", "a CPU type", |c| {
            let ok = !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            ok.then(|| c.to_string()).ok_or_else(|| {
                bad("not a CPU type; expected a name such as \"host\" or \"x86-64-v2-AES\"")
            })
        });
        let balloon = self
            .integer(
                s,
                "balloon",
                0,
                4_194_304,
                Some("MiB; 0 disables the balloon device"),
            )
            .map(|n| n as u64);
        if self.problems.len() > before {
            return None;
        }
        Some(GuestSettings {
            ciupgrade,
            pool,
            tags: tags.unwrap_or_default(),
            description,
            onboot,
            startup,
            cpu,
            balloon,
        })
    }
}
