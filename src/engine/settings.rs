//! What a run's `rollout-started` journal line pins: the template and every VM's settings, as
//! `key -> value` text (never a secret: none is in the plan), and their digest. A resume whose
//! settings differ from the last run's lists each change before anything is touched.

use std::collections::BTreeMap;

use super::plan::Plan;

/// Flat settings: `template`, `<vm>.vmid`, `<vm>.node`, `<vm>.cores`, ...
pub type Settings = BTreeMap<String, String>;

/// The settings a plan runs with.
pub fn of(plan: &Plan) -> Settings {
    let mut out = Settings::new();
    out.insert("template".into(), plan.template_name.clone());
    for vm in &plan.vms {
        let s = &vm.spec;
        let mut put = |key: &str, value: String| {
            out.insert(format!("{}.{key}", vm.name), value);
        };
        put("vmid", vm.vmid.to_string());
        put("node", vm.node.clone());
        put("cores", s.cores.to_string());
        put("sockets", s.sockets.to_string());
        put("memory", format!("{} MiB", s.memory));
        put("disk_size", crate::config::format_size(s.disk_size));
        put("disk", s.disk.clone());
        put("storage", s.storage.clone());
        put("format", s.format.clone());
        // net0 as before NICs were listed (a journal of a single-NIC run compares equal).
        put("bridge", s.primary().bridge.clone());
        for (i, nic) in s.networks.iter().enumerate() {
            let key = match i {
                0 => "vlan".to_string(),
                i => format!("net{i}"),
            };
            match (i, nic.vlan) {
                (0, None) => {}
                (0, Some(tag)) => put(&key, tag.to_string()),
                (_, None) => put(&key, format!("bridge={}", nic.bridge)),
                (_, Some(tag)) => put(&key, format!("bridge={},vlan={tag}", nic.bridge)),
            }
        }
        put("secure_boot", s.secure_boot.to_string());
        put(
            "ciuser",
            s.ciuser.clone().unwrap_or_else(|| "(template's)".into()),
        );
        // Public keys are no secret, but long: their count and first key's comment say enough.
        put(
            "sshkeys",
            s.sshkeys.as_deref().map_or_else(
                || "(template's)".into(),
                |keys| {
                    let lines: Vec<&str> = keys.lines().filter(|l| !l.trim().is_empty()).collect();
                    let comment = lines
                        .first()
                        .and_then(|l| l.split_whitespace().nth(2))
                        .unwrap_or("");
                    format!("{} key(s) {comment}", lines.len())
                        .trim_end()
                        .to_string()
                },
            ),
        );
    }
    out
}

/// The digest of `settings` (the journal's short fingerprint of them).
pub fn digest(settings: &Settings) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (key, value) in settings {
        h.update(format!("{key}={value}\n").as_bytes());
    }
    h.finalize()
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One line per difference: `key: before -> now` (`(none)` for a side without it).
pub fn changes(before: &Settings, now: &Settings) -> Vec<String> {
    let mut keys: Vec<&String> = before.keys().chain(now.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|key| {
            let (a, b) = (before.get(key), now.get(key));
            (a != b).then(|| {
                format!(
                    "{key}: {} -> {}",
                    a.map_or("(none)", String::as_str),
                    b.map_or("(none)", String::as_str)
                )
            })
        })
        .collect()
}

/// How the settings of this run compare with the journal's last run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Comparison {
    /// No earlier run, or the same settings.
    Same,
    /// Changed; each line names one (empty when the journal holds only the digest, from an
    /// older version).
    Changed(Vec<String>),
}

/// Compares `plan` with what the journal's last `rollout-started` recorded.
pub fn compare(plan: &Plan, history: &super::journal::History) -> Comparison {
    let now = of(plan);
    match (&history.settings, &history.settings_values) {
        (None, _) => Comparison::Same,
        (_, Some(before)) if *before == now => Comparison::Same,
        (_, Some(before)) => Comparison::Changed(changes(before, &now)),
        (Some(old), None) if *old == digest(&now) => Comparison::Same,
        (Some(_), None) => Comparison::Changed(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_name_each_key_with_both_values() {
        let before: Settings = [
            ("template", "ubuntu"),
            ("web-1.memory", "4096 MiB"),
            ("web-2.vmid", "102"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
        let now: Settings = [
            ("template", "ubuntu"),
            ("web-1.memory", "8192 MiB"),
            ("web-3.vmid", "103"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
        assert_eq!(
            changes(&before, &now),
            [
                "web-1.memory: 4096 MiB -> 8192 MiB",
                "web-2.vmid: 102 -> (none)",
                "web-3.vmid: (none) -> 103"
            ]
        );
        assert_ne!(digest(&before), digest(&now));
        assert_eq!(digest(&before), digest(&before.clone()));
    }
}
