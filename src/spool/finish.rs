//! The end of a spool file's journey: dead letters are written to `failed/`, then the file is
//! deleted, moved to `done/`, quarantined, or left for the next start. Runs on its own thread;
//! every write that a deletion depends on is synced first.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::{error, info, warn};

use crate::config::OnSuccess;
use crate::pipeline::ack::{AckEvent, Closed, DeadLetter, Outcome};
use crate::pipeline::stats::Stats;

const PARTIAL: &str = ".partial";

/// Paths of the files being worked on, shared with the spool reader.
pub type Claims = Arc<Mutex<HashSet<PathBuf>>>;

/// Where finished files go.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// Dead letters and quarantined files.
    pub failed: PathBuf,
    /// Finished files when `on_success = "move"`.
    pub done: PathBuf,
    /// Delete or move.
    pub on_success: OnSuccess,
    /// The spool, where archive files go.
    pub spool: PathBuf,
    /// The lifecycle state directory, when `[lifecycle] resolve = "archive"`.
    pub lifecycle: Option<PathBuf>,
}

impl Dirs {
    /// Creates the directories and clears dead letters of files that were never finished.
    pub fn prepare(&self) -> std::io::Result<()> {
        let partial = self.failed.join(PARTIAL);
        match std::fs::remove_dir_all(&partial) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir_all(&partial)?;
        if self.on_success == OnSuccess::Move {
            std::fs::create_dir_all(&self.done)?;
        }
        Ok(())
    }
}

/// One line of `NAME.rejected.ndjson`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Letter<'a> {
    index: Option<u64>,
    id: Option<&'a str>,
    error_code: &'a str,
    error_message: &'a str,
    finding: &'a serde_json::Value,
}

/// The readable report `failed/NAME.error.json`.
#[derive(Serialize)]
struct Report<'a> {
    file: String,
    reason: &'a str,
    accepted: u64,
    rejected_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    rejected_findings_file: Option<String>,
    rejected: Vec<serde_json::Value>,
}

/// Handles acknowledgement events until every sender is gone.
pub fn run(mut events: UnboundedReceiver<AckEvent>, dirs: Dirs, claims: Claims, stats: Arc<Stats>) {
    let mut open: HashMap<u64, BufWriter<File>> = HashMap::new();
    let mut reports: HashMap<u64, (crate::decode::build::Scope, Vec<(String, serde_json::Value)>)> =
        HashMap::new();
    let mut rejected: HashMap<u64, std::collections::HashSet<String>> = HashMap::new();
    while let Some(event) = events.blocking_recv() {
        match event {
            AckEvent::Lifecycle { ticket, scope, findings } => {
                reports.insert(ticket, (scope, findings));
            }
            AckEvent::DeadLetter { ticket, letter, permit } => {
                // Dead letters come while the file is read, before its Lifecycle event.
                if let (Some(_), Some(id)) = (&dirs.lifecycle, &letter.id) {
                    rejected.entry(ticket.id()).or_default().insert(id.clone());
                }
                if let Err(e) = append(&mut open, &dirs, ticket.id(), &letter) {
                    // The letter is not safe on disk: keep the file in the spool.
                    error!(file = %ticket.path().display(), error = %e, "cannot write dead letter; the file stays in the spool");
                    ticket.abandon();
                }
                stats.rejected(&letter.code);
                drop(permit);
            }
            AckEvent::Closed(mut closed) => {
                let report = reports.remove(&closed.ticket);
                let refused = rejected.remove(&closed.ticket).unwrap_or_default();
                if let (Some((scope, findings)), Some(state_dir), Outcome::Finished) =
                    (report, &dirs.lifecycle, &closed.outcome)
                {
                    let accepted = findings.into_iter().filter(|(id, _)| !refused.contains(id)).collect();
                    match super::lifecycle::resolve(state_dir, &dirs.spool, &scope, accepted) {
                        Ok(0) => {}
                        Ok(n) => {
                            info!(file = %closed.path.display(), scope = %scope.key, archived = n, "findings no longer reported: archived")
                        }
                        Err(e) => {
                            error!(file = %closed.path.display(), error = %e, "cannot record the report's lifecycle state; the file stays in the spool");
                            closed.outcome = Outcome::Unfinished;
                        }
                    }
                }
                let writer = open.remove(&closed.ticket);
                if let Err(e) = close(&dirs, &closed, writer, &stats) {
                    error!(file = %closed.path.display(), error = %e, "cannot finish the file; it stays in the spool");
                }
                claims.lock().unwrap_or_else(|e| e.into_inner()).remove(&closed.path);
                stats.file_closed();
            }
        }
    }
}

fn partial_path(dirs: &Dirs, ticket: u64) -> PathBuf {
    dirs.failed.join(PARTIAL).join(format!("{ticket}.ndjson"))
}

fn append(
    open: &mut HashMap<u64, BufWriter<File>>,
    dirs: &Dirs,
    ticket: u64,
    letter: &DeadLetter,
) -> std::io::Result<()> {
    let writer = match open.entry(ticket) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(e) => {
            let file = File::options().create(true).append(true).open(partial_path(dirs, ticket))?;
            e.insert(BufWriter::new(file))
        }
    };
    // One line per letter: the finding is re-serialised compactly (its text may span lines);
    // a piece that is not valid JSON is kept as a string.
    let finding = match serde_json::from_slice::<serde_json::Value>(&letter.raw) {
        Ok(v) => v,
        Err(_) => serde_json::Value::String(String::from_utf8_lossy(&letter.raw).into_owned()),
    };
    let line = Letter {
        index: letter.index,
        id: letter.id.as_deref(),
        error_code: &letter.code,
        error_message: &letter.message,
        finding: &finding,
    };
    serde_json::to_writer(&mut *writer, &line)?;
    writer.write_all(b"\n")
}

fn close(
    dirs: &Dirs,
    closed: &Closed,
    writer: Option<BufWriter<File>>,
    stats: &Stats,
) -> std::io::Result<()> {
    let partial = partial_path(dirs, closed.ticket);
    let name = closed.path.file_name().unwrap_or(OsStr::new("unnamed")).to_owned();
    let shown = closed.path.display();
    match &closed.outcome {
        Outcome::Unfinished => {
            drop(writer);
            remove_if_exists(&partial)?;
            info!(file = %shown, "left in the spool to be read again");
            return Ok(());
        }
        Outcome::Finished if closed.rejected == 0 => {}
        Outcome::Finished => {
            let reason = format!(
                "{} of {} findings were rejected",
                closed.rejected,
                closed.rejected + closed.accepted
            );
            let base = unique_base(&dirs.failed, &name);
            write_report(dirs, &base, &reason, closed, writer, &partial)?;
        }
        Outcome::Quarantine(reason) => {
            let base = unique_base(&dirs.failed, &name);
            write_report(dirs, &base, reason, closed, writer, &partial)?;
            std::fs::rename(&closed.path, dirs.failed.join(&base))?;
            sync_dir(&dirs.failed)?;
            stats.file_quarantined();
            warn!(file = %shown, reason = %reason, accepted = closed.accepted, "quarantined");
            return Ok(());
        }
    }
    match dirs.on_success {
        OnSuccess::Delete => remove_if_exists(&closed.path)?,
        OnSuccess::Move => std::fs::rename(&closed.path, dirs.done.join(unique_base(&dirs.done, &name)))?,
    }
    stats.file_finished();
    info!(
        file = %shown,
        accepted = closed.accepted,
        rejected = closed.rejected,
        duration_ms = closed.elapsed.as_millis() as u64,
        "finished"
    );
    Ok(())
}

/// Writes `BASE.error.json` (and `BASE.rejected.ndjson` when findings were rejected), synced.
fn write_report(
    dirs: &Dirs,
    base: &OsStr,
    reason: &str,
    closed: &Closed,
    writer: Option<BufWriter<File>>,
    partial: &Path,
) -> std::io::Result<()> {
    let mut rejected = Vec::new();
    let mut rejected_file = None;
    if let Some(writer) = writer {
        writer.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        let target = dirs.failed.join(with_suffix(base, ".rejected.ndjson"));
        std::fs::rename(partial, &target)?;
        // The report lists each rejection without the finding bodies (those are in the .ndjson).
        for line in BufReader::new(File::open(&target)?).lines() {
            let mut v: serde_json::Value = serde_json::from_str(&line?)?;
            if let Some(o) = v.as_object_mut() {
                o.remove("Finding");
            }
            rejected.push(v);
        }
        rejected_file = Some(target.file_name().unwrap_or_default().to_string_lossy().into_owned());
    }
    let report = Report {
        file: closed.path.display().to_string(),
        reason,
        accepted: closed.accepted,
        rejected_count: closed.rejected,
        rejected_findings_file: rejected_file,
        rejected,
    };
    write_synced(&dirs.failed.join(with_suffix(base, ".error.json")), &serde_json::to_vec_pretty(&report)?)?;
    sync_dir(&dirs.failed)
}

/// Moves a spool entry that is refused outright (a symlink, a FIFO, …) to `failed/` with a report.
pub fn refuse(failed: &Path, path: &Path, reason: &str) -> std::io::Result<()> {
    let name = path.file_name().unwrap_or(OsStr::new("unnamed")).to_owned();
    let base = unique_base(failed, &name);
    let report = Report {
        file: path.display().to_string(),
        reason,
        accepted: 0,
        rejected_count: 0,
        rejected_findings_file: None,
        rejected: vec![],
    };
    write_synced(&failed.join(with_suffix(&base, ".error.json")), &serde_json::to_vec_pretty(&report)?)?;
    std::fs::rename(path, failed.join(&base))?;
    sync_dir(failed)
}

fn with_suffix(base: &OsStr, suffix: &str) -> OsString {
    let mut s = base.to_owned();
    s.push(suffix);
    s
}

/// `NAME`, or `NAME.1`, `NAME.2`, … so that nothing in `dir` is overwritten.
fn unique_base(dir: &Path, name: &OsStr) -> OsString {
    let taken = |b: &OsStr| {
        [OsString::new(), ".error.json".into(), ".rejected.ndjson".into()]
            .iter()
            .any(|suffix| dir.join(with_suffix(b, &suffix.to_string_lossy())).symlink_metadata().is_ok())
    };
    if !taken(name) {
        return name.to_owned();
    }
    (1u64..).map(|n| with_suffix(name, &format!(".{n}"))).find(|b| !taken(b)).expect("some suffix is free")
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn remove_if_exists(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_base_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(unique_base(dir.path(), OsStr::new("a.json")), "a.json");
        std::fs::write(dir.path().join("a.json.error.json"), "").unwrap();
        assert_eq!(unique_base(dir.path(), OsStr::new("a.json")), "a.json.1");
        std::fs::write(dir.path().join("a.json.1"), "").unwrap();
        assert_eq!(unique_base(dir.path(), OsStr::new("a.json")), "a.json.2");
    }

    #[test]
    fn refused_entry_is_moved_with_report() {
        let dir = tempfile::tempdir().unwrap();
        let failed = dir.path().join("failed");
        std::fs::create_dir(&failed).unwrap();
        let link = dir.path().join("evil.json");
        std::os::unix::fs::symlink("/etc/shadow", &link).unwrap();
        refuse(&failed, &link, "a symbolic link").unwrap();
        assert!(failed.join("evil.json").symlink_metadata().unwrap().file_type().is_symlink());
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(failed.join("evil.json.error.json")).unwrap()).unwrap();
        assert_eq!(report["reason"], "a symbolic link");
    }
}
