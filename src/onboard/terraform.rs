//! `import-tf DIR`: the original Terraform/OpenTofu setup (`terraform.tfvars`, the `variable`
//! defaults and the `proxmox_vm_qemu` resource in `*.tf`) as a [`Draft`], with every attribute
//! that has no translation listed with the reason. HCL is parsed by `hcl-rs`; expressions are
//! not evaluated, except a plain `var.NAME` (its tfvars value, else its default).

use std::path::{Path, PathBuf};

use hcl::expr::Expression;
use hcl::{Block, Body};

use super::draft::{Draft, VmDraft};
use super::hcl_value::{Lit, Vars, literal};
use crate::config::{format_size, parse_size};
use crate::pve::IpConfig;

mod address;

/// The resource type of the telmate/proxmox provider's VM.
pub const RESOURCE: &str = "proxmox_vm_qemu";

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not valid HCL: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(
        "{dir}: no resource \"{RESOURCE}\" in any *.tf file; point import-tf at the directory of the Terraform/OpenTofu setup"
    )]
    NoResource { dir: PathBuf },
}

/// An attribute (or block) left out of the config, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// `main.tf: resource proxmox_vm_qemu.ubuntu_vm` and the like.
    pub place: String,
    /// `onboot`, `disk.type`, `provisioner "local-exec"`, ...
    pub what: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Import {
    pub draft: Draft,
    /// `key <- source` for every key written.
    pub translated: Vec<String>,
    pub skipped: Vec<Skipped>,
}

/// A file's top-level body.
struct Parsed {
    name: String,
    body: Body,
}

fn parse_file(path: &Path) -> Result<Parsed, ImportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ImportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let body = hcl::parse(&text).map_err(|e| ImportError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(Parsed {
        name: path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        body,
    })
}

fn label(block: &Block, i: usize) -> &str {
    block.labels().get(i).map_or("", |l| l.as_str())
}

struct Importer {
    vars: Vars,
    out: Import,
    /// A static `ipconfig0` and where it came from (translated once the VM count is known).
    ipconfig0: Option<(IpConfig, String)>,
}

impl Importer {
    fn skip(&mut self, place: &str, what: impl Into<String>, reason: impl Into<String>) {
        self.out.skipped.push(Skipped {
            place: place.to_string(),
            what: what.into(),
            reason: reason.into(),
        });
    }

    fn took(&mut self, key: &str, from: &str) {
        self.out.translated.push(format!("{key} <- {from}"));
    }

    /// The attribute's literal value, or a skip entry with the reason.
    fn value(&mut self, place: &str, key: &str, expr: &Expression) -> Option<Lit> {
        match literal(expr, &self.vars) {
            Ok(v) => Some(v),
            Err(reason) => {
                self.skip(place, key, reason);
                None
            }
        }
    }

    fn provider(&mut self, place: &str, body: &Body) {
        for attr in body.attributes() {
            let key = attr.key();
            match key {
                "pm_api_url" => {
                    if let Some(url) = self.value(place, key, attr.expr()).and_then(|v| v.text()) {
                        self.out.draft.url = url.trim_end_matches('/').trim_end_matches("/api2/json").to_string();
                        self.took("proxmox.url", &format!("{place}: {key}"));
                    }
                }
                "pm_api_token_id" => {
                    if let Some(id) = self.value(place, key, attr.expr()).and_then(|v| v.text()) {
                        self.out.draft.token_id = Some(id);
                        self.took("proxmox.token_id", &format!("{place}: {key}"));
                    }
                }
                "pm_user" => {
                    if let Some(user) = self.value(place, key, attr.expr()).and_then(|v| v.text()) {
                        self.out.draft.user = Some(user);
                        self.took("proxmox.user", &format!("{place}: {key}"));
                    }
                }
                "pm_tls_insecure" => {
                    if let Some(insecure) = self.value(place, key, attr.expr()).and_then(|v| v.truthy()) {
                        self.out.draft.insecure = insecure;
                        if insecure {
                            self.out.draft.note(
                                "proxmox.insecure",
                                "From pm_tls_insecure: the certificate is not checked. Pin it with fingerprint instead.",
                            );
                        }
                        self.took("proxmox.insecure", &format!("{place}: {key}"));
                    }
                }
                "pm_api_token_secret" | "pm_password" | "pm_otp" => self.skip(
                    place,
                    key,
                    "a secret is never copied into deploy.toml: set PVE_TOKEN_SECRET (or PVE_PASSWORD), or token_secret_file",
                ),
                _ => self.skip(place, key, "a provider setting with no pve-rollout equivalent"),
            }
        }
        for block in body.blocks() {
            self.skip(
                place,
                format!("{} block", block.identifier()),
                "a provider setting with no pve-rollout equivalent",
            );
        }
    }

    fn resource(&mut self, place: &str, body: &Body) {
        fn d(s: &mut Importer) -> &mut Draft {
            &mut s.out.draft
        }
        for attr in body.attributes() {
            let key = attr.key();
            let from = format!("{place}: {key}");
            match key {
                "count" => {
                    if let Some(n) = self.value(place, key, attr.expr()).and_then(|v| v.whole()) {
                        d(self).vm_count = usize::try_from(n).ok();
                        self.took("rollout.vm_count", &from);
                    }
                }
                "name" => {
                    let reason = match self.vars.get("vm_name_prefix") {
                        Some(_) => {
                            "pve-rollout names the VMs <vm_name_prefix>-1 .. -N itself (vm_name_prefix is taken from the variable)"
                        }
                        None => "pve-rollout names the VMs <vm_name_prefix>-1 .. -N itself",
                    };
                    self.skip(place, key, reason);
                }
                "target_node" => {
                    if let Some(node) = self.value(place, key, attr.expr()).and_then(|v| v.text()) {
                        d(self).nodes = vec![node];
                        self.took("rollout.nodes", &from);
                    }
                }
                "target_nodes" => match self.value(place, key, attr.expr()) {
                    Some(Lit::List(items)) => {
                        d(self).nodes = items.iter().filter_map(Lit::text).collect();
                        self.took("rollout.nodes", &from);
                    }
                    Some(_) => self.skip(place, key, "not a list of node names"),
                    None => {}
                },
                "clone" | "clone_id" => {
                    if let Some(t) = self.value(place, key, attr.expr()).and_then(|v| v.text()) {
                        d(self).template = Some(t);
                        self.took("rollout.template", &from);
                    }
                }
                "cores" | "sockets" => {
                    if let Some(n) = self.value(place, key, attr.expr()).and_then(|v| v.whole()) {
                        let n = u32::try_from(n).ok();
                        if key == "cores" {
                            d(self).cores = n;
                        } else {
                            d(self).sockets = n;
                        }
                        self.took(&format!("defaults.{key}"), &from);
                    }
                }
                "memory" => {
                    if let Some(n) = self.value(place, key, attr.expr()).and_then(|v| v.whole()) {
                        d(self).memory = Some(n);
                        self.took("defaults.memory", &from);
                    }
                }
                "bios" => match self
                    .value(place, key, attr.expr())
                    .and_then(|v| v.text())
                    .as_deref()
                {
                    Some("ovmf") => {
                        self.took("defaults.secure_boot (UEFI/OVMF, the default)", &from)
                    }
                    Some(other) => self.skip(
                        place,
                        key,
                        format!("\"{other}\": pve-rollout always boots UEFI (OVMF)"),
                    ),
                    None => {}
                },
                "ipconfig0" => match self
                    .value(place, key, attr.expr())
                    .and_then(|v| v.text())
                    .as_deref()
                {
                    Some("ip=dhcp") => {
                        self.took("ipconfig0=ip=dhcp (what pve-rollout sets)", &from)
                    }
                    Some(other) => self.static_ipconfig(place, key, other, &from),
                    None => {}
                },
                "ciuser" => {
                    if let Some(user) = self.value(place, key, attr.expr()).and_then(|v| v.text()) {
                        d(self).ciuser = Some(user);
                        self.took("defaults.ciuser", &from);
                    }
                }
                "sshkeys" => {
                    if let Some(keys) = self.value(place, key, attr.expr()).and_then(|v| v.text()) {
                        d(self).sshkeys = keys
                            .lines()
                            .map(str::trim)
                            .filter(|l| !l.is_empty())
                            .map(str::to_string)
                            .collect();
                        self.took("defaults.sshkeys", &from);
                    }
                }
                "agent" => match self.value(place, key, attr.expr()).and_then(|v| v.truthy()) {
                    Some(true) => self.took("agent=1 (always set by pve-rollout)", &from),
                    Some(false) => self.skip(
                        place,
                        key,
                        "pve-rollout always enables the guest agent: it verifies VMs through it",
                    ),
                    None => {}
                },
                "full_clone" => {
                    match self.value(place, key, attr.expr()).and_then(|v| v.truthy()) {
                        Some(true) => self.took("a full clone (what pve-rollout makes)", &from),
                        Some(false) => {
                            d(self).clone_linked = true;
                            d(self).note("defaults.clone", "From full_clone = false: a linked clone stays on the template's storage and\nformat, so neither is written.");
                            self.took("defaults.clone = \"linked\"", &from);
                        }
                        None => {}
                    }
                }
                _ => {
                    if let Err(reason) = literal(attr.expr(), &self.vars) {
                        self.skip(place, key, reason);
                    } else {
                        self.skip(
                            place,
                            key,
                            "no pve-rollout equivalent (the clone keeps the template's setting)",
                        );
                    }
                }
            }
        }
        let mut disks = 0;
        let mut networks = 0;
        for block in body.blocks() {
            let id = block.identifier();
            match id {
                "disk" if disks == 0 => {
                    disks += 1;
                    self.disk(place, block.body());
                }
                "network" if networks == 0 => {
                    networks += 1;
                    self.network(place, block.body());
                }
                "network" => {
                    networks += 1;
                    self.skip(place, format!("network block #{networks}"), "only the first network is translated (to net0's keys): list every NIC as networks = [{ bridge = ..., vlan = ... }, ...] in [defaults]");
                }
                "disk" => self.skip(place, format!("disk block #{}", disks + 1), "only the first disk is translated: pve-rollout resizes one disk"),
                "provisioner" => self.skip(
                    place,
                    format!("provisioner \"{}\"", label(block, 0)),
                    "pve-rollout verifies each VM itself through the guest agent (what wait_for_vm.sh did); run other commands after it",
                ),
                "lifecycle" => self.skip(place, "lifecycle block", "Terraform state management has no pve-rollout equivalent"),
                other => self.skip(place, format!("{other} block"), "no pve-rollout equivalent"),
            }
        }
    }

    fn disk(&mut self, place: &str, body: &Body) {
        for attr in body.attributes() {
            let key = attr.key();
            let from = format!("{place}: disk.{key}");
            let Some(value) = self.value(place, &format!("disk.{key}"), attr.expr()) else {
                continue;
            };
            let text = value.text().unwrap_or_default();
            match key {
                "size" => match parse_size(&text) {
                    Ok(bytes) => {
                        self.out.draft.disk_size = Some(format_size(bytes));
                        self.took("defaults.disk_size", &from);
                    }
                    Err(e) => self.skip(place, "disk.size", e),
                },
                "storage" => {
                    self.out.draft.storage = Some(text);
                    self.took("defaults.storage", &from);
                }
                "format" => {
                    self.out.draft.format = Some(text);
                    self.took("defaults.format", &from);
                }
                "slot" => {
                    self.out.draft.disk = Some(text);
                    self.took("defaults.disk", &from);
                }
                "type" if text == "disk" => {}
                _ => self.skip(
                    place,
                    format!("disk.{key}"),
                    "no pve-rollout equivalent (the clone keeps the template's disk settings)",
                ),
            }
        }
    }

    fn network(&mut self, place: &str, body: &Body) {
        for attr in body.attributes() {
            let key = attr.key();
            let Some(value) = self.value(place, &format!("network.{key}"), attr.expr()) else {
                continue;
            };
            match (key, value.text().unwrap_or_default().as_str()) {
                ("bridge", bridge) => {
                    self.out.draft.bridge = Some(bridge.to_string());
                    self.took("defaults.bridge", &format!("{place}: network.bridge"));
                }
                ("id", "0") => {}
                // The providers' "no tag".
                ("tag", "0" | "-1") => {}
                ("tag", tag) => match tag.parse::<u16>() {
                    Ok(tag @ 1..=4094) => {
                        self.out.draft.vlan = Some(tag);
                        self.took("defaults.vlan", &format!("{place}: network.tag"));
                    }
                    _ => self.skip(
                        place,
                        "network.tag",
                        format!("\"{tag}\" is not a VLAN tag (1 to 4094)"),
                    ),
                },
                ("model", model) => self.skip(
                    place,
                    "network.model",
                    format!("\"{model}\": the clone keeps the template's NIC model unless networks = [{{ bridge = ..., model = \"{model}\" }}] sets it"),
                ),
                _ => self.skip(place, format!("network.{key}"), "no pve-rollout equivalent"),
            }
        }
    }
}

/// Reads `dir`'s `*.tf` and `terraform.tfvars` (and `*.auto.tfvars`).
pub fn import_dir(dir: &Path) -> Result<Import, ImportError> {
    let read = std::fs::read_dir(dir).map_err(|source| ImportError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = read.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    let is = |p: &Path, suffix: &str| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(suffix))
    };
    let tf: Vec<Parsed> = paths
        .iter()
        .filter(|p| is(p, ".tf"))
        .map(|p| parse_file(p))
        .collect::<Result<_, _>>()?;
    let tfvars: Vec<Parsed> = paths
        .iter()
        .filter(|p| is(p, "terraform.tfvars") || is(p, ".auto.tfvars"))
        .map(|p| parse_file(p))
        .collect::<Result<_, _>>()?;

    let mut importer = Importer {
        vars: Vars::new(),
        out: Import {
            draft: Draft::default(),
            translated: Vec::new(),
            skipped: Vec::new(),
        },
        ipconfig0: None,
    };
    // Defaults first, then tfvars over them (Terraform's order).
    for file in &tf {
        for block in file.body.blocks().filter(|b| b.identifier() == "variable") {
            let name = label(block, 0).to_string();
            if let Some(default) = block.body().attributes().find(|a| a.key() == "default")
                && let Ok(value) = literal(default.expr(), &Vars::new())
            {
                importer.vars.insert(name, value);
            }
        }
    }
    for file in &tfvars {
        for attr in file.body.attributes() {
            if let Ok(value) = literal(attr.expr(), &Vars::new()) {
                importer.vars.insert(attr.key().to_string(), value);
            }
        }
    }

    let mut found = false;
    for file in &tf {
        for block in file.body.blocks() {
            let place = match block.labels().len() {
                0 => format!("{}: {}", file.name, block.identifier()),
                1 => format!(
                    "{}: {} \"{}\"",
                    file.name,
                    block.identifier(),
                    label(block, 0)
                ),
                _ => format!(
                    "{}: {} {}.{}",
                    file.name,
                    block.identifier(),
                    label(block, 0),
                    label(block, 1)
                ),
            };
            match (block.identifier(), label(block, 0)) {
                ("variable", _) => {}
                ("provider", "proxmox") => importer.provider(&place, block.body()),
                ("resource", RESOURCE) if !found => {
                    found = true;
                    importer.resource(&place, block.body());
                }
                ("resource", RESOURCE) => importer.skip(
                    &place,
                    "resource",
                    "only the first proxmox_vm_qemu resource is translated",
                ),
                ("resource", "time_sleep") => importer.skip(
                    &place,
                    "resource",
                    "the stagger between clones is rollout.deployment_delay",
                ),
                ("terraform", _) => importer.skip(&place, "block", "Terraform's own settings"),
                ("output", _) => importer.skip(
                    &place,
                    "block",
                    "pve-rollout writes summary.json, inventory.ini and vm_<VMID>_ip.txt instead",
                ),
                (kind, _) => importer.skip(
                    &place,
                    "block",
                    format!("a {kind} with no pve-rollout equivalent"),
                ),
            }
        }
    }
    if !found {
        return Err(ImportError::NoResource {
            dir: dir.to_path_buf(),
        });
    }
    importer.variables();
    importer.addresses();
    let mut out = importer.out;
    out.draft.header = vec![format!(
        "deploy.toml written by `pve-rollout import-tf` from {}.",
        dir.display()
    )];
    Ok(out)
}

impl Importer {
    /// The original flow's variables that map to keys directly.
    fn variables(&mut self) {
        let from = |name: &str| format!("variable \"{name}\"");
        if let Some(prefix) = self.vars.get("vm_name_prefix").and_then(Lit::text) {
            self.out.draft.vm_name_prefix = Some(prefix);
            self.took("rollout.vm_name_prefix", &from("vm_name_prefix"));
        }
        if self.out.draft.vm_count.is_none()
            && let Some(n) = self.vars.get("vm_count").and_then(Lit::whole)
        {
            self.out.draft.vm_count = usize::try_from(n).ok();
            self.took("rollout.vm_count", &from("vm_count"));
        }
        match self.vars.get("deployment_delay").cloned() {
            Some(Lit::Num(n)) if n.fract() == 0.0 && n >= 0.0 => {
                self.out.draft.deployment_delay = Some(format!("{}s", n as u64));
                self.took(
                    "rollout.deployment_delay (seconds)",
                    &from("deployment_delay"),
                );
            }
            Some(Lit::Str(s)) => {
                let text = if s.chars().all(|c| c.is_ascii_digit()) {
                    format!("{s}s")
                } else {
                    s
                };
                self.out.draft.deployment_delay = Some(text);
                self.took("rollout.deployment_delay", &from("deployment_delay"));
            }
            Some(_) => self.skip("variables", "deployment_delay", "not a number of seconds"),
            None => {}
        }
        if let Some(Lit::Map(entries)) = self.vars.get("vm_configs").cloned() {
            for (name, value) in entries {
                let Lit::Map(fields) = value else {
                    self.skip("variables", format!("vm_configs.{name}"), "not an object");
                    continue;
                };
                let mut vm = VmDraft {
                    name: name.clone(),
                    ..VmDraft::default()
                };
                for (key, v) in fields {
                    match key.as_str() {
                        "cores" => vm.cores = v.whole().and_then(|n| u32::try_from(n).ok()),
                        "memory" => vm.memory = v.whole(),
                        "disk_size" => {
                            vm.disk_size =
                                v.text().and_then(|t| parse_size(&t).ok()).map(format_size)
                        }
                        other => self.skip(
                            "variables",
                            format!("vm_configs.{name}.{other}"),
                            "not a per-VM setting pve-rollout has",
                        ),
                    }
                }
                self.out.draft.vm_configs.push(vm);
            }
            if !self.out.draft.vm_configs.is_empty() {
                self.took(
                    "vm_configs (these names are the VMs; vm_count is then ignored)",
                    &from("vm_configs"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/terraform")
    }

    #[test]
    fn the_original_setup_becomes_an_equivalent_config() {
        let import = import_dir(&fixture()).expect("import");
        let text = import.draft.render();
        let config = Config::parse(&text, "imported").unwrap_or_else(|e| panic!("{e}\n{text}"));
        let r = &config.rollout;
        // terraform.tfvars wins over the variable defaults (3 VMs, 45 s, not 2 and 30).
        assert_eq!(import.draft.vm_count, Some(3));
        assert_eq!(r.deployment_delay, std::time::Duration::from_secs(45));
        assert_eq!(r.vm_name_prefix, "ubuntu-opentofu");
        assert_eq!(r.nodes, ["pve1"]);
        assert_eq!(
            r.template,
            crate::config::TemplateRef::Name("ubuntu".into())
        );
        let d = &config.defaults;
        assert_eq!((d.cores, d.sockets, d.memory), (4, 2, 32768));
        assert_eq!(d.disk_size, 128 << 30);
        assert_eq!((d.storage.as_str(), d.format.as_str()), ("ssd", "qcow2"));
        assert_eq!(
            (d.primary().bridge.as_str(), d.disk.as_str()),
            ("vmbr1", "scsi0")
        );
        assert_eq!(d.ciuser.as_deref(), Some("ubuntu"));
        assert!(
            d.sshkeys
                .as_deref()
                .is_some_and(|k| k.starts_with("ssh-ed25519 "))
        );
        assert!(config.proxmox.insecure);
        assert_eq!(config.proxmox.url, "https://pve1.example.org:8006");
        assert_eq!(
            config.proxmox.token_id.as_deref(),
            Some("root@pam!terraform")
        );
        assert_eq!(config.vm_configs["db-server-1"].memory, Some(32768));
        assert_eq!(config.vm_configs["db-server-1"].disk_size, Some(256 << 30));
        assert_eq!(config.vm_configs["web-server-1"].cores, Some(4));
        // The token secret in terraform.tfvars is never copied.
        assert!(!text.contains("tfvars-secret"), "{text}");
    }

    #[test]
    fn every_attribute_left_out_is_named_with_its_reason() {
        let import = import_dir(&fixture()).expect("import");
        let find = |what: &str| {
            import
                .skipped
                .iter()
                .find(|s| s.what == what)
                .unwrap_or_else(|| panic!("{what} not listed: {:#?}", import.skipped))
        };
        assert!(
            find("provisioner \"local-exec\"")
                .reason
                .contains("guest agent")
        );
        assert!(find("lifecycle block").reason.contains("Terraform state"));
        assert!(
            find("onboot")
                .reason
                .contains("conditional expression is not evaluated")
        );
        assert!(find("pm_api_token_secret").reason.contains("never copied"));
        assert!(
            find("network.model")
                .reason
                .contains("template's NIC model")
        );
        for attr in ["scsihw", "os_type", "boot", "name"] {
            find(attr);
        }
        assert!(
            import
                .skipped
                .iter()
                .any(|s| s.place.contains("time_sleep.stagger")),
            "{:#?}",
            import.skipped
        );
    }

    #[test]
    fn a_vlan_tag_becomes_vlan_and_extra_network_blocks_point_at_networks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let original = std::fs::read_to_string(fixture().join("main.tf")).expect("fixture");
        let tagged = original.replacen(
            "    model  = \"virtio\"\n  }\n",
            "    model  = \"virtio\"\n    tag    = 20\n  }\n\n  network {\n    id     = 1\n    bridge = \"vmbr2\"\n  }\n",
            1,
        );
        assert_ne!(tagged, original);
        std::fs::write(dir.path().join("main.tf"), tagged).expect("write");
        for other in std::fs::read_dir(fixture()).expect("fixture dir") {
            let path = other.expect("entry").path();
            if path.file_name() != Some(std::ffi::OsStr::new("main.tf")) && path.is_file() {
                std::fs::copy(&path, dir.path().join(path.file_name().expect("name")))
                    .expect("copy");
            }
        }
        let import = import_dir(dir.path()).expect("import");
        assert_eq!(import.draft.vlan, Some(20));
        let config = Config::parse(&import.draft.render(), "deploy.toml").expect("valid");
        assert_eq!(config.defaults.networks[0].vlan, Some(20));
        let second = (import.skipped.iter())
            .find(|s| s.what == "network block #2")
            .unwrap_or_else(|| panic!("{:#?}", import.skipped));
        assert!(second.reason.contains("networks = ["), "{}", second.reason);
    }

    #[test]
    fn bad_hcl_and_a_dir_without_the_resource_are_clear_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("main.tf"), "resource \"x\" \"y\" {}\n").expect("write");
        let e = import_dir(dir.path()).expect_err("no proxmox_vm_qemu");
        assert!(
            e.to_string().contains("no resource \"proxmox_vm_qemu\""),
            "{e}"
        );
        std::fs::write(dir.path().join("main.tf"), "resource \"x\" {\n  a = \n").expect("write");
        let e = import_dir(dir.path()).expect_err("bad HCL");
        assert!(e.to_string().contains("main.tf: not valid HCL"), "{e}");
    }
}
