//! A deploy.toml to be written: the keys `init` and `import-tf` fill, and a renderer that
//! writes them with comments (what was found, where a value came from) in the order and layout
//! of deploy.toml.example. Keys left `None` are not written, so they take their defaults.

use std::fmt::Write as _;

/// One `[vm_configs."name"]` entry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VmDraft {
    pub name: String,
    pub cores: Option<u32>,
    pub memory: Option<u64>,
    pub disk_size: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Draft {
    /// Comment lines at the top (what wrote the file, from what).
    pub header: Vec<String>,
    pub url: String,
    pub token_id: Option<String>,
    pub user: Option<String>,
    pub fingerprint: Option<String>,
    pub ca_cert: Option<String>,
    pub insecure: bool,
    /// A name, or a vmid written as an integer.
    pub template: Option<String>,
    pub vm_count: Option<usize>,
    pub vm_name_prefix: Option<String>,
    pub deployment_delay: Option<String>,
    pub nodes: Vec<String>,
    pub cores: Option<u32>,
    pub sockets: Option<u32>,
    /// MiB.
    pub memory: Option<u64>,
    pub disk_size: Option<String>,
    /// The disk to resize (`scsi0`, ...).
    pub disk: Option<String>,
    pub storage: Option<String>,
    pub format: Option<String>,
    pub bridge: Option<String>,
    /// net0's VLAN tag.
    pub vlan: Option<u16>,
    /// `clone = "linked"` (then `storage` and `format` are left out: PVE refuses both).
    pub clone_linked: bool,
    /// net0's static address for the one VM (`10.0.10.21/24`), or a range for several.
    pub ip: Option<String>,
    pub ip_pool: Option<String>,
    pub gateway: Option<String>,
    pub secure_boot: Option<bool>,
    pub ciuser: Option<String>,
    pub sshkeys: Vec<String>,
    pub vm_configs: Vec<VmDraft>,
    /// Comment lines written above a key, by dotted path (`rollout.template`).
    pub notes: Vec<(String, String)>,
}

/// A TOML basic string.
pub fn quote(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| quote(i)).collect();
    format!("[{}]", quoted.join(", "))
}

impl Draft {
    /// Adds a comment line above `key`.
    pub fn note(&mut self, key: &str, text: impl Into<String>) {
        self.notes.push((key.to_string(), text.into()));
    }

    fn key(&self, out: &mut String, key: &str, value: Option<String>) {
        let name = key.rsplit('.').next().unwrap_or(key);
        for (k, text) in &self.notes {
            if k == key {
                for line in text.lines() {
                    let _ = writeln!(out, "# {line}");
                }
            }
        }
        if let Some(value) = value {
            let _ = writeln!(out, "{name} = {value}");
        }
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.header {
            let _ = writeln!(out, "# {line}");
        }
        out.push_str(
            "#\n# Every key is documented in deploy.toml.example; keys left out take their defaults.\n\
             # Check it against the cluster with `pve-rollout plan -c <this file>`.\n\n",
        );
        out.push_str("[proxmox]\n");
        self.key(&mut out, "proxmox.url", Some(quote(&self.url)));
        if let Some(token_id) = &self.token_id {
            out.push_str(
                "# The secret is never written here: env PVE_TOKEN_SECRET, or token_secret_file.\n",
            );
            self.key(&mut out, "proxmox.token_id", Some(quote(token_id)));
        }
        if let Some(user) = &self.user {
            out.push_str(
                "# The password is never written here: env PVE_PASSWORD, or password_file.\n",
            );
            self.key(&mut out, "proxmox.user", Some(quote(user)));
        }
        self.key(
            &mut out,
            "proxmox.fingerprint",
            self.fingerprint.as_deref().map(quote),
        );
        self.key(
            &mut out,
            "proxmox.ca_cert",
            self.ca_cert.as_deref().map(quote),
        );
        if self.insecure {
            self.key(&mut out, "proxmox.insecure", Some("true".into()));
        }

        out.push_str("\n[rollout]\n");
        let template = self.template.as_ref().map(|t| match t.parse::<u32>() {
            Ok(id) => id.to_string(),
            Err(_) => quote(t),
        });
        self.key(&mut out, "rollout.template", template);
        self.key(
            &mut out,
            "rollout.vm_count",
            self.vm_count.map(|n| n.to_string()),
        );
        self.key(
            &mut out,
            "rollout.vm_name_prefix",
            self.vm_name_prefix.as_deref().map(quote),
        );
        self.key(
            &mut out,
            "rollout.deployment_delay",
            self.deployment_delay.as_deref().map(quote),
        );
        let nodes = (!self.nodes.is_empty()).then(|| list(&self.nodes));
        self.key(&mut out, "rollout.nodes", nodes);

        out.push_str("\n[defaults]\n");
        self.key(
            &mut out,
            "defaults.cores",
            self.cores.map(|n| n.to_string()),
        );
        self.key(
            &mut out,
            "defaults.sockets",
            self.sockets.map(|n| n.to_string()),
        );
        self.key(
            &mut out,
            "defaults.memory",
            self.memory.map(|n| n.to_string()),
        );
        self.key(
            &mut out,
            "defaults.disk_size",
            self.disk_size.as_deref().map(quote),
        );
        self.key(&mut out, "defaults.disk", self.disk.as_deref().map(quote));
        // A linked clone stays on the template's storage and format.
        let full = !self.clone_linked;
        let storage = self.storage.as_deref().filter(|_| full).map(quote);
        self.key(&mut out, "defaults.storage", storage);
        let format = self.format.as_deref().filter(|_| full).map(quote);
        self.key(&mut out, "defaults.format", format);
        let linked = self.clone_linked.then(|| quote("linked"));
        self.key(&mut out, "defaults.clone", linked);
        self.key(
            &mut out,
            "defaults.bridge",
            self.bridge.as_deref().map(quote),
        );
        self.key(&mut out, "defaults.ip", self.ip.as_deref().map(quote));
        let pool = self.ip_pool.as_deref().map(quote);
        self.key(&mut out, "defaults.ip_pool", pool);
        let gateway = self.gateway.as_deref().map(quote);
        self.key(&mut out, "defaults.gateway", gateway);
        self.key(
            &mut out,
            "defaults.vlan",
            self.vlan.map(|tag| tag.to_string()),
        );
        self.key(
            &mut out,
            "defaults.secure_boot",
            self.secure_boot.map(|b| b.to_string()),
        );
        self.key(
            &mut out,
            "defaults.ciuser",
            self.ciuser.as_deref().map(quote),
        );
        let keys = (!self.sshkeys.is_empty()).then(|| list(&self.sshkeys));
        self.key(&mut out, "defaults.sshkeys", keys);

        for vm in &self.vm_configs {
            let _ = writeln!(out, "\n[vm_configs.{}]", quote(&vm.name));
            if let Some(cores) = vm.cores {
                let _ = writeln!(out, "cores = {cores}");
            }
            if let Some(memory) = vm.memory {
                let _ = writeln!(out, "memory = {memory}");
            }
            if let Some(disk_size) = &vm.disk_size {
                let _ = writeln!(out, "disk_size = {}", quote(disk_size));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// A key whose comment needs TOML escaping.
    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExample you \"laptop\"";

    #[test]
    fn a_rendered_draft_is_a_valid_config_with_its_notes() {
        let mut draft = Draft {
            header: vec!["written by a test".into()],
            url: "https://pve1.example.org:8006".into(),
            token_id: Some("root@pam!rollout".into()),
            fingerprint: Some("AB".repeat(32)),
            template: Some("9000".into()),
            vm_count: Some(3),
            vm_name_prefix: Some("web".into()),
            nodes: vec!["pve1".into()],
            memory: Some(4096),
            disk_size: Some("64G".into()),
            sshkeys: vec![KEY.into()],
            vm_configs: vec![VmDraft {
                name: "db-1".into(),
                memory: Some(8192),
                ..VmDraft::default()
            }],
            ..Draft::default()
        };
        draft.note("rollout.template", "templates found: ubuntu (9000 on pve1)");
        let text = draft.render();
        assert!(
            text.contains("# templates found: ubuntu (9000 on pve1)\ntemplate = 9000\n"),
            "{text}"
        );
        let config = Config::parse(&text, "draft").unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(config.rollout.vm_name_prefix, "web");
        assert_eq!(config.vm_configs["db-1"].memory, Some(8192));
        assert_eq!(config.defaults.sshkeys.as_deref(), Some(KEY));
    }
}
