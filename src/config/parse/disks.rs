//! `disks` in `[defaults]` and `[vm_configs."name"]`: the extra disks allocated after the clone.
//! Whether each storage exists on the VM's node and holds images, and whether the slot is free
//! in the template, is the plan's check.

use std::collections::HashMap;

use indexmap::IndexMap;
use toml::de::DeValue;

use super::*;
use crate::config::ExtraDisk;

pub(in crate::config) const DISK_KEYS: &[&str] = &["slot", "size", "storage", "format"];
const EXAMPLE: &str = "disks = [{ slot = \"scsi1\", size = \"200G\", storage = \"ssd\" }]";

impl Doc<'_> {
    /// `None` when the key is absent or bad (a bad one is recorded as a problem).
    pub(super) fn disks(&mut self, s: &Section<'_, '_>) -> Option<Vec<ExtraDisk>> {
        let value = s.get("disks")?;
        let path = s.key_path("disks");
        self.key_lines
            .insert(path.clone(), self.line(value.span().start));
        let DeValue::Array(items) = value.get_ref() else {
            let b = bad_hint(
                format!(
                    "expected an array of tables, found {}",
                    type_name(value.get_ref())
                ),
                format!("write {EXAMPLE}"),
            );
            self.at_value(path, value, b);
            return None;
        };
        let before = self.problems.len();
        let mut slots: HashMap<String, usize> = HashMap::new();
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            let DeValue::Table(table) = item.get_ref() else {
                let b = bad_hint(
                    format!(
                        "expected a table with slot, size and storage, found {}",
                        type_name(item.get_ref())
                    ),
                    format!("write {EXAMPLE}"),
                );
                self.at_value(item_path, item, b);
                continue;
            };
            let t = Section {
                path: item_path,
                table: Some(table),
                line: Some(self.line(item.span().start)),
            };
            self.unknown_keys(&t, DISK_KEYS);
            let slot =
                self.string_with(&t, "slot", "a disk slot", |text| {
                    formats::check_disk(text).map(|()| text.to_string()).map_err(|allowed| {
                    bad_hint(
                        format!("not a disk slot; expected {allowed}"),
                        "pick a free slot of the template, such as \"scsi1\" or \"virtio1\"",
                    )
                })
                });
            let size = self.field(&t, "size", disk_size);
            let storage =
                self.checked_string(&t, "storage", "a storage id", formats::check_storage_id);
            let format = self.string_with(&t, "format", "a disk format", |f| match f {
                "raw" | "qcow2" | "vmdk" => Ok(f.to_string()),
                _ => Err(bad("not a disk format; allowed: raw, qcow2, vmdk")),
            });
            for (required, present) in [
                ("slot", slot.is_some()),
                ("size", size.is_some()),
                ("storage", storage.is_some()),
            ] {
                if !present && t.get(required).is_none() {
                    self.missing(
                        t.key_path(required),
                        t.line,
                        format!("every extra disk needs slot, size and storage: {EXAMPLE}"),
                    );
                }
            }
            if let Some(slot) = &slot
                && let Some(first) = slots.insert(slot.clone(), i)
                && let Some(v) = t.get("slot")
            {
                self.at_value(
                    t.key_path("slot"),
                    v,
                    bad_hint(
                        format!("{path}[{first}] uses this slot already"),
                        "give every extra disk its own slot",
                    ),
                );
            }
            if let (Some(slot), Some(size), Some(storage)) = (slot, size, storage) {
                out.push(ExtraDisk {
                    slot,
                    size,
                    storage,
                    format,
                });
            }
        }
        (self.problems.len() == before).then_some(out)
    }

    /// An extra disk in the boot disk's slot would replace the cloned system disk: refused for
    /// every VM whose merged settings have one (the line is that of the `disks` that set it).
    pub(super) fn disk_slot_clashes(
        &mut self,
        defaults: &VmSpec,
        vm_configs: &IndexMap<String, VmOverrides>,
    ) {
        let report = |doc: &mut Self, key: String, spec: &VmSpec| {
            let Some(i) = spec.disks.iter().position(|d| d.slot == spec.disk) else {
                return;
            };
            let line = doc.key_lines.get(&key).copied();
            let key = format!("{key}[{i}].slot");
            doc.push(
                Some(key),
                line,
                Some(format!("{:?}", spec.disk)),
                bad_hint(
                    format!("is the boot disk's slot (disk = \"{}\")", spec.disk),
                    "the template's boot disk lives there; give the extra disk another slot, \
                     such as \"scsi1\"",
                ),
            );
        };
        report(self, "defaults.disks".to_string(), defaults);
        for (name, o) in vm_configs {
            let spec = defaults.merged(o);
            // Reported once, where the clash was written.
            if o.disks.is_none() && o.disk.is_none() {
                continue;
            }
            let key = if o.disks.is_some() {
                format!("vm_configs.{}.disks", key_segment(name))
            } else {
                "defaults.disks".to_string()
            };
            report(self, key, &spec);
        }
    }
}

/// A size string that PVE's `<storage>:<GiB>` notation carries exactly (whole MiB).
fn disk_size(v: &DeValue<'_>) -> Result<u64, Bad> {
    match v {
        DeValue::String(text) => {
            let bytes = formats::parse_size(text)
                .map_err(|allowed| bad(format!("not a size; expected {allowed}")))?;
            if bytes < (1 << 20) || bytes % (1 << 20) != 0 {
                return Err(bad_hint(
                    "not a whole number of MiB",
                    "PVE allocates new disks in GiB (fractions down to 1 MiB); write a size such as \"200G\" or \"512M\"",
                ));
            }
            Ok(bytes)
        }
        DeValue::Integer(i) => Err(bad_hint(
            "expected a size string, found an integer",
            format!("write \"{i}G\" for {i} GiB"),
        )),
        other => Err(expected("a size such as \"200G\"", other)),
    }
}
