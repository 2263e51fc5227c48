//! `ConfigError`: every problem found in deploy.toml at once, each naming the key, the line, the
//! bad value (never a secret), what is allowed and what to do.

use std::fmt;

/// One thing wrong in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path such as `rollout.vm_count` or `vm_configs.web-1.cores`; `None` for
    /// problems with the file as a whole.
    pub key: Option<String>,
    /// 1-based line in the file, when the problem has a place.
    pub line: Option<usize>,
    /// The bad value as written (shortened), when it is safe to show.
    pub value: Option<String>,
    /// What is wrong and what is allowed.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.key, &self.value) {
            (Some(key), Some(value)) => write!(f, "{key} = {value}: ")?,
            (Some(key), None) => write!(f, "{key}: ")?,
            (None, _) => {}
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            // Hints are written as sentence tails; start them as a sentence here.
            let mut chars = hint.chars();
            if let Some(first) = chars.next() {
                write!(f, ". {}{}", first.to_uppercase(), chars.as_str())?;
            }
        }
        Ok(())
    }
}

/// A refused config (exit code 2). Displays one line per problem: `origin:line: key = value:
/// what is wrong. What to do.`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where the config came from (a path, or a name such as `<demo>`).
    pub origin: String,
    /// In file order; never empty.
    pub problems: Vec<Problem>,
}

impl ConfigError {
    /// Exit code for a bad config or usage.
    pub fn exit_code(&self) -> i32 {
        2
    }

    pub(crate) fn single(origin: &str, problem: Problem) -> ConfigError {
        ConfigError {
            origin: origin.to_string(),
            problems: vec![problem],
        }
    }

    /// Does any problem concern `key`?
    pub fn mentions(&self, key: &str) -> bool {
        self.problems.iter().any(|p| p.key.as_deref() == Some(key))
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.problems.len() > 1 {
            writeln!(
                f,
                "{}: {} problems; nothing was sent to Proxmox:",
                self.origin,
                self.problems.len()
            )?;
        }
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            match problem.line {
                Some(line) => write!(f, "{}:{line}: {problem}", self.origin)?,
                None => write!(f, "{}: {problem}", self.origin)?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}
