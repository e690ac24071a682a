//! inotify through `notify`: a file closed after writing, or renamed into the spool, is a
//! candidate at once; an overflowed event queue asks for a full scan.

use std::path::{Path, PathBuf};

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::scan::is_candidate;

/// The spool cannot be watched or scanned.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// inotify refused (no such directory, no permission, out of watches).
    #[error("cannot watch the spool directory {0}: {1}")]
    Watch(PathBuf, notify::Error),
    /// Listing the directory failed.
    #[error("cannot list the spool directory {0}: {1}")]
    Scan(PathBuf, std::io::Error),
    /// The watcher's thread ended.
    #[error("the spool watcher stopped")]
    Stopped,
}

/// What the watcher reports.
#[derive(Debug)]
pub enum Signal {
    /// This path may be ready.
    Path(PathBuf),
    /// Events were lost: scan everything.
    Rescan,
}

/// Starts watching `dir`; keep the watcher alive as long as signals are wanted.
pub fn start(dir: &Path) -> Result<(RecommendedWatcher, mpsc::UnboundedReceiver<Signal>), WatchError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let handler = move |event: notify::Result<Event>| {
        let signal = match event {
            Ok(e) if e.need_rescan() => Some(Signal::Rescan),
            Ok(Event { kind, mut paths, .. }) => match kind {
                EventKind::Access(AccessKind::Close(AccessMode::Write))
                | EventKind::Modify(ModifyKind::Name(RenameMode::To)) => paths.pop().map(Signal::Path),
                _ => None,
            },
            Err(_) => Some(Signal::Rescan),
        };
        if let Some(signal) = signal {
            if matches!(&signal, Signal::Path(p) if !p.file_name().is_some_and(is_candidate)) {
                return;
            }
            let _ = tx.send(signal);
        }
    };
    let mut watcher =
        notify::recommended_watcher(handler).map_err(|e| WatchError::Watch(dir.to_owned(), e))?;
    watcher.watch(dir, RecursiveMode::NonRecursive).map_err(|e| WatchError::Watch(dir.to_owned(), e))?;
    Ok((watcher, rx))
}
