//! `completions` and `man`: generated from the clap definitions, so they list exactly the
//! subcommands and flags `--help` shows.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::{Cli, Exit};

/// The program's name as shells and man know it.
const BIN: &str = "pve-rollout";

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

#[derive(Args)]
pub struct ManArgs {
    /// Write every page (pve-rollout.1 and one pve-rollout-<subcommand>.1 per subcommand) into
    /// this directory instead of printing pve-rollout.1 on stdout.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub fn completions(args: &CompletionsArgs) -> Result<u8, Exit> {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), BIN, &mut out);
    write_stdout(&out)
}

pub fn man(args: &ManArgs) -> Result<u8, Exit> {
    let command = Cli::command();
    if let Some(dir) = &args.dir {
        std::fs::create_dir_all(dir)
            .and_then(|()| clap_mangen::generate_to(command, dir))
            .map_err(|e| {
                eprintln!("error: --dir {}: {e}", dir.display());
                Exit(1)
            })?;
        eprintln!("wrote the manual pages in {}", dir.display());
        return Ok(0);
    }
    let mut out = Vec::new();
    clap_mangen::Man::new(command)
        .render(&mut out)
        .map_err(|e| {
            eprintln!("error: rendering the manual page: {e}");
            Exit(1)
        })?;
    write_stdout(&out)
}

fn write_stdout(bytes: &[u8]) -> Result<u8, Exit> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(0),
        // A closed pipe (`| head`) is the reader's choice, not a failure.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        Err(e) => {
            eprintln!("error: writing to stdout: {e}");
            Err(Exit(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flag's long form, and its short one when there is one.
    type Flag = (String, Option<String>);

    /// Every subcommand and its flags.
    fn surface() -> Vec<(String, Vec<Flag>)> {
        let mut command = Cli::command();
        command.build();
        command
            .get_subcommands()
            .filter(|s| s.get_name() != "help")
            .map(|sub| {
                let flags = sub
                    .get_arguments()
                    .filter_map(|a| Some((a.get_long()?, a.get_short())))
                    .filter(|(l, _)| !matches!(*l, "help" | "version"))
                    .map(|(l, s)| (format!("--{l}"), s.map(|s| format!("-{s} "))))
                    .collect();
                (sub.get_name().to_string(), flags)
            })
            .collect()
    }

    #[test]
    fn the_readme_documents_every_subcommand_and_flag() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .expect("README.md");
        let mut missing = Vec::new();
        for (sub, flags) in surface() {
            // The subcommand's own heading: "### `pve-rollout <sub>".
            let heading = format!("### `pve-rollout {sub}");
            let Some(start) = readme.find(&heading) else {
                missing.push(format!("section {heading}"));
                continue;
            };
            let section = &readme[start..];
            let end = section[3..].find("\n#").map_or(section.len(), |i| i + 3);
            let section = &section[..end];
            for (long, short) in flags {
                let found = section.contains(&long)
                    || short.as_ref().is_some_and(|s| section.contains(s.as_str()));
                if !found {
                    missing.push(format!("{sub} {long}"));
                }
            }
        }
        assert!(missing.is_empty(), "README lacks: {missing:?}");
    }

    #[test]
    fn the_man_pages_document_every_subcommand_and_flag() {
        let dir = tempfile::tempdir().expect("tempdir");
        clap_mangen::generate_to(Cli::command(), dir.path()).expect("pages");
        let read = |name: &str| {
            std::fs::read_to_string(dir.path().join(name))
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                // roff escapes hyphens.
                .replace("\\-", "-")
        };
        let top = read("pve-rollout.1");
        for (sub, flags) in surface() {
            assert!(
                top.contains(&format!("pve-rollout-{sub}(1)")),
                "{sub} not in pve-rollout.1"
            );
            let page = read(&format!("pve-rollout-{sub}.1"));
            for (long, _) in flags {
                assert!(page.contains(&long), "{long} not in pve-rollout-{sub}.1");
            }
        }
    }
}
