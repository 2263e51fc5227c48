//! `[output]`: where the run's journal, logs and summary go.

use std::path::PathBuf;

use toml::de::DeTable;

use super::*;

pub(in crate::config) const OUTPUT_KEYS: &[&str] = &["dir"];

impl Doc<'_> {
    pub(super) fn output(&mut self, root: &DeTable<'_>) -> Option<OutputConfig> {
        let s = self.section(root, "output");
        self.unknown_keys(&s, OUTPUT_KEYS);
        let before = self.problems.len();
        let dir = self.string_with(&s, "dir", "a directory path", |d| {
            if d.trim().is_empty() {
                Err(bad_hint(
                    "is empty",
                    "name a directory, such as \"rollout-out\"",
                ))
            } else {
                Ok(PathBuf::from(d))
            }
        });
        (self.problems.len() == before).then(|| OutputConfig {
            dir: dir.unwrap_or_else(|| PathBuf::from("rollout-out")),
        })
    }
}
