//! `[hooks]` and the guest checks (`[[checks.exec]]`, a VM's `checks_exec_add` /
//! `checks_exec_replace`): commands as argv arrays, checked before anything is sent.

use std::collections::HashSet;
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use super::*;
use indexmap::IndexMap;

use crate::config::{
    ExecCheck, ExecChecksOverride, HooksConfig, OutputPattern, Placeholder, ProgramLookup,
    check_placeholders, find_program,
};

pub(in crate::config) const HOOKS_KEYS: &[&str] =
    &["on_verified", "on_finished", "max_parallel", "timeout"];
pub(in crate::config) const EXEC_CHECK_KEYS: &[&str] = &[
    "name",
    "command",
    "expect_exit",
    "expect_output",
    "timeout",
    "retries",
];
/// A guest check's time for one run unless it says otherwise.
const EXEC_CHECK_TIMEOUT: Duration = Duration::from_secs(60);

const ARGV_HINT: &str = "write the program and its arguments as an array, such as \
     [\"ansible-playbook\", \"-i\", \"{inventory}\", \"site.yml\"]; for shell syntax say so: \
     [\"sh\", \"-c\", \"...\"]";

/// Who runs a command, which decides what it may contain.
#[derive(Clone, Copy)]
enum Runner<'p> {
    /// On this machine, with these placeholders; the program must exist here.
    Local(&'p [Placeholder]),
    /// In the guest, as written.
    Guest,
}

impl Doc<'_> {
    pub(in crate::config) fn hooks(&mut self, root: &DeTable<'_>) -> Option<HooksConfig> {
        let s = self.section(root, "hooks");
        self.unknown_keys(&s, HOOKS_KEYS);
        let before = self.problems.len();
        let base = self.base;
        let on_verified = self.field(&s, "on_verified", |v| {
            argv(v, Runner::Local(&Placeholder::ALL), base)
        });
        let on_finished = self.field(&s, "on_finished", |v| {
            argv(v, Runner::Local(&Placeholder::ROLLOUT), base)
        });
        let max_parallel = self.integer(
            &s,
            "max_parallel",
            1,
            256,
            Some("how many on_verified hooks may run at once"),
        );
        let timeout = self.duration(&s, "timeout", true);
        if self.problems.len() > before {
            return None;
        }
        let default = HooksConfig::default();
        Some(HooksConfig {
            on_verified,
            on_finished,
            max_parallel: max_parallel.map_or(default.max_parallel, |n| n as usize),
            timeout: timeout.unwrap_or(default.timeout),
        })
    }

    /// A VM's `checks_exec_add` or `checks_exec_replace` (not both). `Err(())` when bad.
    pub(in crate::config) fn vm_exec_checks(
        &mut self,
        vm: &Section<'_, '_>,
    ) -> Result<Option<ExecChecksOverride>, ()> {
        let before = self.problems.len();
        let add = self.exec_checks(vm, "checks_exec_add");
        let replace = self.exec_checks(vm, "checks_exec_replace");
        if let (Some(_), Some(value)) = (vm.get("checks_exec_add"), vm.get("checks_exec_replace")) {
            let b = bad_hint(
                "set together with checks_exec_add",
                "keep one: checks_exec_add runs these after [[checks.exec]], \
                 checks_exec_replace runs them instead",
            );
            self.at_value(vm.key_path("checks_exec_replace"), value, b);
        }
        if self.problems.len() > before {
            return Err(());
        }
        Ok(add
            .map(ExecChecksOverride::Add)
            .or(replace.map(ExecChecksOverride::Replace)))
    }

    /// A VM adding a check named like one of `[[checks.exec]]` would run two under one name.
    pub(in crate::config) fn exec_check_clashes(
        &mut self,
        every_vm: &[ExecCheck],
        vm_configs: &IndexMap<String, VmOverrides>,
    ) {
        for (vm, overrides) in vm_configs {
            let Some(ExecChecksOverride::Add(added)) = &overrides.checks_exec else {
                continue;
            };
            for (i, check) in added.iter().enumerate() {
                if every_vm.iter().any(|c| c.name == check.name) {
                    let key = format!("vm_configs.{}.checks_exec_add[{i}].name", key_segment(vm));
                    let line = self.key_lines.get(&key).copied();
                    self.push(
                        Some(key),
                        line,
                        Some(format!("{:?}", check.name)),
                        bad_hint(
                            "a check of [[checks.exec]] has this name",
                            "name it differently, or use checks_exec_replace to run this VM's \
                             own list instead",
                        ),
                    );
                }
            }
        }
    }

    /// An array of guest-check tables under `key` of `s` (`[[checks.exec]]` and the per-VM
    /// lists). `None` when one was bad or the key is absent.
    pub(in crate::config) fn exec_checks(
        &mut self,
        s: &Section<'_, '_>,
        key: &str,
    ) -> Option<Vec<ExecCheck>> {
        let value = s.get(key)?;
        let path = s.key_path(key);
        self.key_lines
            .insert(path.clone(), self.line(value.span().start));
        let DeValue::Array(items) = value.get_ref() else {
            let b = bad_hint(
                format!("expected tables, found {}", type_name(value.get_ref())),
                format!("write each check as a [[{path}]] table with name and command"),
            );
            self.at_value(path, value, b);
            return None;
        };
        let before = self.problems.len();
        let mut names: HashSet<String> = HashSet::new();
        let mut checks = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            let DeValue::Table(table) = item.get_ref() else {
                let b = expected("a table with name and command", item.get_ref());
                self.at_value(item_path, item, b);
                continue;
            };
            let t = Section {
                path: item_path.clone(),
                table: Some(table),
                line: Some(self.line(item.span().start)),
            };
            self.unknown_keys(&t, EXEC_CHECK_KEYS);
            let name = self.string_with(&t, "name", "a check name", |n| {
                if n.trim().is_empty() {
                    Err(bad_hint(
                        "is empty",
                        "name the check, such as \"ssh listens\"",
                    ))
                } else {
                    Ok(n.trim().to_string())
                }
            });
            let command = self.field(&t, "command", |v| argv(v, Runner::Guest, None));
            let expect_exit = self.integer(&t, "expect_exit", 0, 255, None);
            let expect_output =
                self.string_with(&t, "expect_output", "a regular expression", |p| {
                    OutputPattern::new(p).map_err(|e| {
                        bad_hint(
                            format!("not a regular expression: {}", one_line(&e)),
                            "it is matched against the command's stdout (Rust regex syntax)",
                        )
                    })
                });
            let timeout = self.duration(&t, "timeout", true);
            let retries = self.integer(&t, "retries", 0, 100, None);
            for (required, present) in [("name", name.is_some()), ("command", command.is_some())] {
                if !present && t.get(required).is_none() {
                    self.missing(
                        t.key_path(required),
                        t.line,
                        "every check needs a name and a command",
                    );
                }
            }
            if let Some(n) = &name
                && !names.insert(n.clone())
            {
                let b = bad_hint(
                    "another check in this list has this name",
                    "give each check its own name (failures are reported by it)",
                );
                if let Some(v) = t.get("name") {
                    self.at_value(t.key_path("name"), v, b);
                }
            }
            if let (Some(name), Some(command)) = (name, command) {
                checks.push(ExecCheck {
                    name,
                    command,
                    expect_exit: expect_exit.unwrap_or(0),
                    expect_output,
                    timeout: timeout.unwrap_or(EXEC_CHECK_TIMEOUT),
                    retries: retries.unwrap_or(0) as u32,
                });
            }
        }
        (self.problems.len() == before).then_some(checks)
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A command: a non-empty array of strings whose program is not empty. A local command's
/// placeholders must be known and its program must exist (a path with a slash is resolved
/// against `base`, the config file's directory; a bare name is looked up in PATH).
fn argv(v: &DeValue<'_>, runner: Runner<'_>, base: Option<&Path>) -> Result<Vec<String>, Bad> {
    let items = match v {
        DeValue::Array(items) => items,
        DeValue::String(_) => {
            return Err(bad_hint(
                "expected an array of arguments, found a string (commands are never split or \
                 passed to a shell)",
                ARGV_HINT,
            ));
        }
        other => {
            return Err(bad_hint(
                format!("expected an array of arguments, found {}", type_name(other)),
                ARGV_HINT,
            ));
        }
    };
    let mut args = Vec::with_capacity(items.len());
    for item in items.iter() {
        match item.get_ref().as_str() {
            Some(text) => args.push(text.to_string()),
            None => {
                return Err(bad_hint(
                    format!(
                        "arguments must be strings, found {}",
                        type_name(item.get_ref())
                    ),
                    "quote every argument, numbers too",
                ));
            }
        }
    }
    let Some(program) = args.first() else {
        return Err(bad_hint(
            "is empty; expected a program and its arguments",
            ARGV_HINT,
        ));
    };
    if program.trim().is_empty() {
        return Err(bad_hint("the program (first element) is empty", ARGV_HINT));
    }
    match runner {
        Runner::Guest => {
            // Left as written, so a hook's placeholder here would reach the guest unreplaced.
            let placeholder = Placeholder::ALL.into_iter().find_map(|p| {
                let word = format!("{{{}}}", p.as_str());
                args.iter().any(|a| a.contains(&word)).then_some(word)
            });
            if let Some(word) = placeholder {
                return Err(bad_hint(
                    format!("{word} is not replaced in a guest check: it runs as written"),
                    "placeholders are for [hooks]; a check runs inside the VM it checks",
                ));
            }
        }
        Runner::Local(allowed) => {
            if check_placeholders(program, &[]).is_err() {
                return Err(bad_hint(
                    "the program (first element) holds a placeholder",
                    "name the program itself; pass values to it as arguments",
                ));
            }
            for arg in &args[1..] {
                check_placeholders(arg, allowed).map_err(|why| {
                    bad_hint(
                        why,
                        "the same values are in the hook's environment as PVE_ROLLOUT_VM_NAME, \
                         PVE_ROLLOUT_VMID, PVE_ROLLOUT_IP, PVE_ROLLOUT_NODE, \
                         PVE_ROLLOUT_INVENTORY, PVE_ROLLOUT_SUMMARY, PVE_ROLLOUT_OUTPUT_DIR",
                    )
                })?;
            }
            let path = std::env::var_os("PATH");
            match find_program(program, base, path.as_deref()) {
                Ok(ProgramLookup::Path(full)) => args[0] = full.display().to_string(),
                Ok(ProgramLookup::InPath(_)) => {}
                Err((what, hint)) => return Err(bad_hint(what, hint)),
            }
        }
    }
    Ok(args)
}
