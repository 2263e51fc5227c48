//! Which deploy.toml to use when `-c` is not given: `$PVE_ROLLOUT_CONFIG`, then `./deploy.toml`,
//! then `$XDG_CONFIG_HOME/pve-rollout/deploy.toml` (`~/.config` when unset). The environment and
//! the working directory are passed in, so the lookup is a pure function of them.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::{ConfigError, Problem};

/// Names the config file when `-c` is not given.
pub const CONFIG_ENV: &str = "PVE_ROLLOUT_CONFIG";
/// The file name looked for in the working directory and the user's config directory.
pub const CONFIG_FILE: &str = "deploy.toml";

/// What the lookup reads from the process: its working directory and environment.
pub struct Lookup<'a> {
    /// `-c FILE`, when given: used as is, no search.
    pub explicit: Option<&'a Path>,
    pub cwd: &'a Path,
    pub env: &'a dyn Fn(&str) -> Option<OsString>,
}

impl Lookup<'_> {
    /// The file to load, or an error listing every place looked at (exit code 2).
    pub fn resolve(&self) -> Result<PathBuf, ConfigError> {
        if let Some(path) = self.explicit {
            return Ok(path.to_path_buf());
        }
        let set = |name: &str| (self.env)(name).filter(|v| !v.is_empty());
        if let Some(path) = set(CONFIG_ENV) {
            // Named on purpose: a missing file is an error, not a reason to look elsewhere.
            let path = PathBuf::from(path);
            if path.is_file() {
                return Ok(path);
            }
            return Err(ConfigError::single(
                &path.display().to_string(),
                Problem {
                    key: None,
                    line: None,
                    value: None,
                    message: format!("${CONFIG_ENV} names this file, which does not exist"),
                    hint: Some(format!(
                        "fix or unset {CONFIG_ENV}, or pass -c FILE (`pve-rollout init` writes one)"
                    )),
                },
            ));
        }
        let mut looked = vec![format!("${CONFIG_ENV} (not set)")];
        for candidate in self.candidates() {
            if candidate.is_file() {
                return Ok(candidate);
            }
            looked.push(candidate.display().to_string());
        }
        Err(ConfigError::single(
            "deploy.toml",
            Problem {
                key: None,
                line: None,
                value: None,
                message: format!("no config file found; looked at: {}", looked.join(", ")),
                hint: Some(
                    "pass -c FILE, set PVE_ROLLOUT_CONFIG, or write one with `pve-rollout init` \
                     (deploy.toml.example documents every key)"
                        .into(),
                ),
            },
        ))
    }

    /// `./deploy.toml`, then the user's config directory's, when a home is known.
    fn candidates(&self) -> Vec<PathBuf> {
        let set = |name: &str| (self.env)(name).filter(|v| !v.is_empty());
        let mut out = vec![self.cwd.join(CONFIG_FILE)];
        // The XDG base directory spec: a relative $XDG_CONFIG_HOME is invalid and ignored.
        let config_home = set("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| set("HOME").map(|home| Path::new(&home).join(".config")));
        if let Some(dir) = config_home {
            out.push(dir.join("pve-rollout").join(CONFIG_FILE));
        }
        out
    }
}

/// The process's own lookup: its working directory and environment.
pub fn resolve_config_path(explicit: Option<&Path>) -> Result<PathBuf, ConfigError> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    Lookup {
        explicit,
        cwd: &cwd,
        env: &|name| std::env::var_os(name),
    }
    .resolve()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn resolve(
        explicit: Option<&Path>,
        cwd: &Path,
        vars: &[(&str, &Path)],
    ) -> Result<PathBuf, ConfigError> {
        let vars: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_os_str().to_owned()))
            .collect();
        Lookup {
            explicit,
            cwd,
            env: &|name| vars.get(name).cloned(),
        }
        .resolve()
    }

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, "").expect("write");
    }

    #[test]
    fn each_place_in_order_and_the_error_lists_them_all() {
        let root = tempfile::tempdir().expect("tempdir");
        let cwd = root.path().join("work");
        let home = root.path().join("home");
        let xdg = root.path().join("xdg");
        std::fs::create_dir_all(&cwd).expect("mkdir");
        let vars = [("HOME", home.as_path()), ("XDG_CONFIG_HOME", xdg.as_path())];

        let error = resolve(None, &cwd, &vars).expect_err("nothing exists yet");
        let text = error.to_string();
        for place in [
            "$PVE_ROLLOUT_CONFIG (not set)".to_string(),
            cwd.join("deploy.toml").display().to_string(),
            xdg.join("pve-rollout/deploy.toml").display().to_string(),
        ] {
            assert!(text.contains(&place), "{place} missing from: {text}");
        }
        assert_eq!(error.exit_code(), 2);

        // Without XDG_CONFIG_HOME: ~/.config.
        let in_home = home.join(".config/pve-rollout/deploy.toml");
        touch(&in_home);
        assert_eq!(
            resolve(None, &cwd, &[("HOME", home.as_path())]).expect("home"),
            in_home
        );
        // XDG_CONFIG_HOME wins over ~/.config.
        let in_xdg = xdg.join("pve-rollout/deploy.toml");
        touch(&in_xdg);
        assert_eq!(resolve(None, &cwd, &vars).expect("xdg"), in_xdg);
        // ./deploy.toml wins over the config dir.
        let local = cwd.join("deploy.toml");
        touch(&local);
        assert_eq!(resolve(None, &cwd, &vars).expect("cwd"), local);
        // $PVE_ROLLOUT_CONFIG wins over ./deploy.toml.
        let named = root.path().join("named.toml");
        touch(&named);
        let with_env = [vars[0], vars[1], ("PVE_ROLLOUT_CONFIG", named.as_path())];
        assert_eq!(resolve(None, &cwd, &with_env).expect("env"), named);
        // -c wins over everything, even a file that does not exist (loading says so).
        let explicit = root.path().join("explicit.toml");
        assert_eq!(
            resolve(Some(&explicit), &cwd, &with_env).expect("-c"),
            explicit
        );
    }

    #[test]
    fn a_missing_file_named_by_the_variable_is_an_error_not_a_fallback() {
        let root = tempfile::tempdir().expect("tempdir");
        touch(&root.path().join("deploy.toml"));
        let missing = root.path().join("gone.toml");
        let error = resolve(
            None,
            root.path(),
            &[("PVE_ROLLOUT_CONFIG", missing.as_path())],
        )
        .expect_err("named file is missing");
        let text = error.to_string();
        assert!(
            text.contains("gone.toml") && text.contains("PVE_ROLLOUT_CONFIG"),
            "{text}"
        );
    }

    #[test]
    fn a_relative_xdg_config_home_is_ignored() {
        let root = tempfile::tempdir().expect("tempdir");
        let home = root.path().join("home");
        let in_home = home.join(".config/pve-rollout/deploy.toml");
        touch(&in_home);
        let found = resolve(
            None,
            root.path(),
            &[
                ("HOME", home.as_path()),
                ("XDG_CONFIG_HOME", Path::new("rel")),
            ],
        )
        .expect("falls back to ~/.config");
        assert_eq!(found, in_home);
    }
}
