//! `--log-file`: the process's `tracing` records in a file whose path is known only once the
//! config is loaded (its default is in the output dir). Records from before that are kept in
//! memory (up to a cap) and written first, so the file holds the whole run.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use tracing_subscriber::fmt::MakeWriter;

/// The file's name in the output dir when `--log-file` is not given.
pub const DEFAULT_NAME: &str = "pve-rollout.log";

/// Records kept while the file is not open yet; more are dropped (and counted).
const PENDING_CAP: usize = 256 * 1024;

#[derive(Default)]
enum State {
    #[default]
    Pending,
    Open(File),
}

#[derive(Default)]
struct Inner {
    state: State,
    pending: Vec<u8>,
    dropped: usize,
}

/// A handle to the log file; clones share it. Write through it via [`MakeWriter`].
#[derive(Clone, Default)]
pub struct LogFile(Arc<Mutex<Inner>>);

impl LogFile {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while writing a log line leaves nothing half-done worth refusing.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Opens (appending: a resumed run adds to its log) `explicit`, or `DEFAULT_NAME` in
    /// `output_dir`, creating the directory; writes what was recorded so far.
    pub fn open(&self, explicit: Option<&Path>, output_dir: &Path) -> io::Result<PathBuf> {
        let path = explicit.map_or_else(|| output_dir.join(DEFAULT_NAME), Path::to_path_buf);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
        let mut inner = self.lock();
        file.write_all(&inner.pending)?;
        if inner.dropped > 0 {
            writeln!(
                file,
                "({} bytes of records from before this file was opened were dropped)",
                inner.dropped
            )?;
        }
        inner.pending = Vec::new();
        inner.state = State::Open(file);
        Ok(path)
    }
}

/// One record's writer (tracing-subscriber formats a record, then writes it in one go).
pub struct Record(LogFile);

impl Write for Record {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut inner = self.0.lock();
        let inner = &mut *inner;
        match &mut inner.state {
            State::Open(file) => file.write_all(buf)?,
            State::Pending if inner.pending.len() + buf.len() <= PENDING_CAP => {
                inner.pending.extend_from_slice(buf)
            }
            State::Pending => inner.dropped += buf.len(),
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.0.lock().state {
            State::Open(file) => file.flush(),
            State::Pending => Ok(()),
        }
    }
}

impl<'a> MakeWriter<'a> for LogFile {
    type Writer = Record;
    fn make_writer(&'a self) -> Record {
        Record(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_before_the_open_come_first_and_a_rerun_appends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = LogFile::default();
        log.make_writer().write_all(b"early\n").expect("write");
        let path = log.open(None, &dir.path().join("out")).expect("open");
        assert_eq!(path, dir.path().join("out").join(DEFAULT_NAME));
        log.make_writer().write_all(b"late\n").expect("write");
        let again = LogFile::default();
        again.open(Some(&path), dir.path()).expect("reopen");
        again.make_writer().write_all(b"rerun\n").expect("write");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "early\nlate\nrerun\n"
        );
    }
}
