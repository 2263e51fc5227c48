//! Commands written in deploy.toml (hooks run on the operator's machine, checks run in the
//! guest): argv arrays, never a shell string, and the `{placeholder}`s a hook may use.
//!
//! A placeholder is `{` + a lowercase name + `}`. Anything else with braces is left alone, so
//! shell code passed to `sh -c` keeps `${VAR}`, `{ a; b; }` and awk's `{print $1}`; `{{` and
//! `}}` write a literal brace where a placeholder-like word must stay as written.

use std::path::{Path, PathBuf};

/// A value a hook's arguments and environment carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Placeholder {
    Name,
    Vmid,
    Ip,
    Node,
    Inventory,
    Summary,
    OutputDir,
}

impl Placeholder {
    pub const ALL: [Placeholder; 7] = [
        Placeholder::Name,
        Placeholder::Vmid,
        Placeholder::Ip,
        Placeholder::Node,
        Placeholder::Inventory,
        Placeholder::Summary,
        Placeholder::OutputDir,
    ];
    /// What `on_finished` can be told: it runs once for the whole rollout, not for one VM.
    pub const ROLLOUT: [Placeholder; 3] = [
        Placeholder::Inventory,
        Placeholder::Summary,
        Placeholder::OutputDir,
    ];

    /// The word between the braces.
    pub fn as_str(self) -> &'static str {
        match self {
            Placeholder::Name => "name",
            Placeholder::Vmid => "vmid",
            Placeholder::Ip => "ip",
            Placeholder::Node => "node",
            Placeholder::Inventory => "inventory",
            Placeholder::Summary => "summary",
            Placeholder::OutputDir => "output_dir",
        }
    }

    /// The environment variable carrying the same value.
    pub fn env_var(self) -> &'static str {
        match self {
            Placeholder::Name => "PVE_ROLLOUT_VM_NAME",
            Placeholder::Vmid => "PVE_ROLLOUT_VMID",
            Placeholder::Ip => "PVE_ROLLOUT_IP",
            Placeholder::Node => "PVE_ROLLOUT_NODE",
            Placeholder::Inventory => "PVE_ROLLOUT_INVENTORY",
            Placeholder::Summary => "PVE_ROLLOUT_SUMMARY",
            Placeholder::OutputDir => "PVE_ROLLOUT_OUTPUT_DIR",
        }
    }

    fn from_word(word: &str) -> Option<Placeholder> {
        Placeholder::ALL.into_iter().find(|p| p.as_str() == word)
    }
}

/// One piece of an argument: literal text or a placeholder.
enum Piece<'a> {
    Text(&'a str),
    Word(&'a str),
}

/// Splits `arg` into literal text and `{word}`s (see the module comment for what counts).
fn pieces(arg: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let bytes = arg.as_bytes();
    let (mut i, mut start) = (0, 0);
    while i < bytes.len() {
        let doubled = matches!(bytes[i], b'{' | b'}') && bytes.get(i + 1) == Some(&bytes[i]);
        if doubled {
            out.push(Piece::Text(&arg[start..=i]));
            i += 2;
            start = i;
            continue;
        }
        let after_dollar = i > 0 && bytes[i - 1] == b'$';
        if bytes[i] == b'{' && !after_dollar {
            let word_len = arg[i + 1..]
                .bytes()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
                .count();
            let first_ok = bytes.get(i + 1).is_some_and(u8::is_ascii_lowercase);
            if first_ok && bytes.get(i + 1 + word_len) == Some(&b'}') {
                out.push(Piece::Text(&arg[start..i]));
                out.push(Piece::Word(&arg[i + 1..i + 1 + word_len]));
                i += word_len + 2;
                start = i;
                continue;
            }
        }
        i += 1;
    }
    out.push(Piece::Text(&arg[start..]));
    out
}

/// Every placeholder `arg` uses must be in `allowed`; the error names the first one that is not.
pub fn check_placeholders(arg: &str, allowed: &[Placeholder]) -> Result<(), String> {
    for piece in pieces(arg) {
        let Piece::Word(word) = piece else { continue };
        match Placeholder::from_word(word) {
            Some(p) if allowed.contains(&p) => {}
            Some(_) => {
                return Err(format!(
                    "{{{word}}} is not known here; allowed: {}",
                    braced(allowed)
                ));
            }
            None => {
                return Err(format!(
                    "unknown placeholder {{{word}}}; allowed: {}",
                    braced(allowed)
                ));
            }
        }
    }
    Ok(())
}

fn braced(allowed: &[Placeholder]) -> String {
    allowed
        .iter()
        .map(|p| format!("{{{}}}", p.as_str()))
        .collect::<Vec<_>>()
        .join(" ")
        + " (write {{ and }} for literal braces)"
}

/// `arg` with each placeholder replaced by `value(placeholder)`.
pub fn expand(arg: &str, value: impl Fn(Placeholder) -> String) -> String {
    let mut out = String::with_capacity(arg.len());
    for piece in pieces(arg) {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Word(word) => match Placeholder::from_word(word) {
                Some(p) => out.push_str(&value(p)),
                // Validation refused unknown words; keep one as written rather than drop it.
                None => {
                    out.push('{');
                    out.push_str(word);
                    out.push('}');
                }
            },
        }
    }
    out
}

/// Where a hook's program was found: the config says how it was looked up, so messages can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgramLookup {
    /// A path with a slash, taken relative to the config file's directory.
    Path(PathBuf),
    /// A bare name found in `PATH`.
    InPath(PathBuf),
}

/// Finds the program a hook runs. A name with a slash is a path (relative to `base`, the config
/// file's directory); a bare name is looked up in `path_var` (the `PATH` value). The result is
/// an absolute-enough path to an executable file, or what to tell the operator.
pub fn find_program(
    program: &str,
    base: Option<&Path>,
    path_var: Option<&std::ffi::OsStr>,
) -> Result<ProgramLookup, (String, String)> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        let full = match base {
            Some(base) if p.is_relative() => base.join(p),
            _ => p,
        };
        return match executable(&full) {
            Ok(()) => Ok(ProgramLookup::Path(full)),
            Err(why) => Err((
                format!("{} {why}", full.display()),
                match base {
                    Some(base) => format!(
                        "a program path with a slash is taken relative to the config file's \
                         directory ({}); fix the path, or give a bare name to look it up in PATH",
                        base.display()
                    ),
                    None => "a program path with a slash is taken relative to the working \
                             directory; fix the path, or give a bare name to look it up in PATH"
                        .to_string(),
                },
            )),
        };
    }
    let found = path_var
        .into_iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|candidate| executable(candidate).is_ok());
    match found {
        Some(full) => Ok(ProgramLookup::InPath(full)),
        None => Err((
            format!("no executable named {program:?} in PATH"),
            "install it, or give its path (with a slash: relative paths are taken from the \
             config file's directory)"
                .to_string(),
        )),
    }
}

fn executable(path: &Path) -> Result<(), &'static str> {
    let meta = std::fs::metadata(path).map_err(|_| "does not exist")?;
    if !meta.is_file() {
        return Err("is not a file");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o111 == 0 {
            return Err("is not executable (chmod +x it)");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(p: Placeholder) -> String {
        match p {
            Placeholder::Name => "web-1".into(),
            Placeholder::Vmid => "101".into(),
            other => format!("<{}>", other.as_str()),
        }
    }

    #[test]
    fn placeholders_expand_and_shell_braces_stay() {
        assert_eq!(expand("--limit={name}", values), "--limit=web-1");
        assert_eq!(expand("{name}/{vmid}", values), "web-1/101");
        assert_eq!(expand("{output_dir}", values), "<output_dir>");
        for shell in [
            "echo ${name}",
            "f() { echo; }",
            "awk '{print $1}'",
            "{Name}",
            "{}",
            "{",
            "}",
            "{1}",
        ] {
            assert_eq!(expand(shell, values), shell, "{shell}");
            assert_eq!(check_placeholders(shell, &Placeholder::ALL), Ok(()));
        }
        assert_eq!(expand("{{name}}", values), "{name}");
        assert_eq!(expand("{{{name}}}", values), "{web-1}");
    }

    #[test]
    fn unknown_or_unavailable_placeholders_are_named() {
        let e = check_placeholders("{hostname}", &Placeholder::ALL).unwrap_err();
        assert!(e.contains("unknown placeholder {hostname}"), "{e}");
        assert!(e.contains("{name}") && e.contains("{output_dir}"), "{e}");
        let e = check_placeholders("x{ip}", &Placeholder::ROLLOUT).unwrap_err();
        assert!(e.contains("{ip} is not known here"), "{e}");
        assert_eq!(
            check_placeholders("{{hostname}}", &Placeholder::ALL),
            Ok(())
        );
    }

    #[test]
    fn programs_are_found_by_path_or_in_path() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("notify.sh");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        let plain = dir.path().join("plain.txt");
        std::fs::write(&plain, "").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        assert_eq!(
            find_program("./notify.sh", Some(dir.path()), None),
            Ok(ProgramLookup::Path(dir.path().join("./notify.sh")))
        );
        let (what, hint) = find_program("./missing.sh", Some(dir.path()), None).unwrap_err();
        assert!(what.ends_with("missing.sh does not exist"), "{what}");
        assert!(hint.contains("config file's directory"), "{hint}");
        let (what, _) = find_program("./plain.txt", Some(dir.path()), None).unwrap_err();
        assert!(what.contains("not executable"), "{what}");
        assert_eq!(
            find_program("notify.sh", None, Some(dir.path().as_os_str())),
            Ok(ProgramLookup::InPath(dir.path().join("notify.sh")))
        );
        let (what, _) = find_program("notify.sh", None, Some("/nonexistent".as_ref())).unwrap_err();
        assert!(what.contains("in PATH"), "{what}");
    }
}
