//! The spool directory: find files (inotify, a scan at start and after an overflow, a slow
//! periodic rescan), claim each once, decode it into the queue, and finish it when its findings
//! are settled (see [`finish`]).

pub mod finish;
pub mod lifecycle;
pub mod open;
pub mod scan;
mod watch;

use std::collections::{HashSet, VecDeque};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::runtime::Handle;
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::FormatsConfig;
use crate::decode::{self, DecodeEnd, Decoded};
use crate::pipeline::ack::{AckEvent, DeadLetter, Ticket};
use crate::pipeline::queue::{Budget, Lanes, Queued};
use crate::pipeline::stats::Stats;
use finish::Claims;
pub use watch::WatchError;

/// Findings of one report kept for `[lifecycle]`; a larger report is delivered without it.
pub const MAX_LIFECYCLE_FINDINGS: usize = 50_000;

/// Everything the reader needs.
pub struct Reader {
    /// The spool directory.
    pub dir: PathBuf,
    /// Subdirectories the agent owns (never read).
    pub own_dirs: Vec<PathBuf>,
    /// Where refused entries go.
    pub failed_dir: PathBuf,
    /// Scan-found files younger than this wait.
    pub settle_time: Duration,
    /// Safety-net rescan period.
    pub rescan_interval: Duration,
    /// How files are decoded: defaults for findings, the default resource, XCCDF options.
    pub options: decode::Options,
    /// Formats forced by file name.
    pub formats: FormatsConfig,
    /// Whose files are read.
    pub owners: open::Owners,
    /// The memory budget.
    pub budget: Budget,
    /// `[lifecycle]` when `resolve = "archive"`: collect each complete report's findings.
    pub lifecycle: Option<crate::config::LifecycleConfig>,
    /// The queues, one per destination.
    pub queue: Lanes,
    /// Acknowledgement events.
    pub events: UnboundedSender<AckEvent>,
    /// Files being worked on.
    pub claims: Claims,
    /// Counters.
    pub stats: Arc<Stats>,
}

/// Candidates waiting to be read, each once.
#[derive(Default)]
struct Pending {
    order: VecDeque<PathBuf>,
    set: HashSet<PathBuf>,
}

impl Pending {
    fn add(&mut self, path: PathBuf) {
        if self.set.insert(path.clone()) {
            self.order.push_back(path);
        }
    }
    fn next(&mut self) -> Option<PathBuf> {
        let p = self.order.pop_front()?;
        self.set.remove(&p);
        Some(p)
    }
}

impl Reader {
    /// Reads every file present now (ignoring `settle_time`) and returns; for `run --once`.
    pub async fn drain_once(self, shutdown: CancellationToken) -> Result<(), WatchError> {
        let skip = self.own_dirs.clone();
        let found = scan::scan(&self.dir, &skip, Duration::ZERO, SystemTime::now())
            .map_err(|e| WatchError::Scan(self.dir.clone(), e))?
            .ready;
        info!(files = found.len(), dir = %self.dir.display(), "reading the spool once");
        let reader = Arc::new(self);
        let mut next_ticket = 0;
        for path in found {
            if shutdown.is_cancelled() {
                break;
            }
            next_ticket += 1;
            reader.clone().read(path, next_ticket, shutdown.clone()).await;
        }
        Ok(())
    }

    /// Watches the directory and reads files as they arrive, until `shutdown`. `ready` is
    /// notified once the directory is watched and has been scanned.
    pub async fn watch(
        self,
        shutdown: CancellationToken,
        ready: Arc<tokio::sync::Notify>,
    ) -> Result<(), WatchError> {
        let (_watcher, mut signals) = watch::start(&self.dir)?;
        let reader = Arc::new(self);
        let mut pending = Pending::default();
        let mut rescan = tokio::time::interval(reader.rescan_interval);
        rescan.tick().await; // the first tick is immediate; the first scan is below
        let mut next_ticket = 0;
        let mut full_scan = true; // the first loop scans everything
        let mut settle_scan: Option<Instant> = None;
        loop {
            if full_scan {
                full_scan = false;
                match scan::scan(&reader.dir, &reader.own_dirs, reader.settle_time, SystemTime::now()) {
                    Ok(found) => {
                        found.ready.into_iter().for_each(|p| pending.add(p));
                        // Files still being written get another look once they have settled.
                        settle_scan = (found.unsettled > 0).then(|| Instant::now() + reader.settle_time);
                    }
                    Err(e) => {
                        error!(dir = %reader.dir.display(), error = %e, "cannot scan the spool")
                    }
                }
                ready.notify_one();
            }
            while let Ok(signal) = signals.try_recv() {
                match signal {
                    watch::Signal::Path(p) if !reader.own_dirs.contains(&p) => pending.add(p),
                    watch::Signal::Path(_) => {}
                    watch::Signal::Rescan => full_scan = true,
                }
            }
            if full_scan {
                continue;
            }
            if let Some(path) = pending.next() {
                next_ticket += 1;
                reader.clone().read(path, next_ticket, shutdown.clone()).await;
                if shutdown.is_cancelled() {
                    return Ok(());
                }
                continue;
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                _ = rescan.tick() => full_scan = true,
                () = sleep_until(settle_scan.unwrap_or_else(Instant::now)), if settle_scan.is_some() => full_scan = true,
                signal = signals.recv() => match signal {
                    Some(watch::Signal::Path(p)) if !reader.own_dirs.contains(&p) => pending.add(p),
                    Some(watch::Signal::Path(_)) => {}
                    Some(watch::Signal::Rescan) => full_scan = true,
                    None => return Err(WatchError::Stopped),
                },
            }
        }
    }

    /// Claims and reads one file (on a blocking thread); returns when it has been read.
    async fn read(self: Arc<Self>, path: PathBuf, ticket_id: u64, shutdown: CancellationToken) {
        if !self.claims.lock().unwrap_or_else(|e| e.into_inner()).insert(path.clone()) {
            return; // already on its way
        }
        let handle = Handle::current();
        let reader = self.clone();
        let task =
            tokio::task::spawn_blocking(move || reader.read_blocking(&path, ticket_id, &handle, &shutdown));
        if let Err(e) = task.await {
            error!(error = %e, "the spool reader panicked");
        }
    }

    fn read_blocking(&self, path: &Path, ticket_id: u64, handle: &Handle, shutdown: &CancellationToken) {
        let (mut file, meta) = match open::open_regular(path, Some(&self.owners)) {
            Ok(opened) => opened,
            Err(refusal) => {
                self.claims.lock().unwrap_or_else(|e| e.into_inner()).remove(path);
                if matches!(refusal, open::Refusal::Gone) {
                    debug!(file = %path.display(), "gone before it was read");
                    return;
                }
                warn!(file = %path.display(), reason = %refusal, "refused");
                match finish::refuse(&self.failed_dir, path, &refusal.to_string()) {
                    Ok(()) => self.stats.file_quarantined(),
                    Err(e) => {
                        error!(file = %path.display(), error = %e, "cannot move the refused entry aside")
                    }
                }
                return;
            }
        };
        let ticket = Ticket::new(ticket_id, path.to_owned(), self.events.clone());
        let span = tracing::info_span!("file", file = %path.display(), bytes = meta.len());
        let _enter = span.enter();
        let reserve = |len: usize| {
            handle.block_on(async {
                tokio::select! {
                    permit = self.budget.reserve(len) => Some(permit),
                    () = shutdown.cancelled() => None,
                }
            })
        };
        let now = OffsetDateTime::now_utc();
        let mut options = self.options.clone();
        options.context.now = now.format(&Rfc3339).expect("RFC 3339 formatting of a valid time");
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut forced = self.formats.forced(&name);
        // With [lifecycle], a report's findings (reduced) until its scope is known, up to a cap.
        // The format is detected first (and decode told it, so nothing is detected twice): an
        // ASFF file takes part only when [[lifecycle.asff]] names it, and otherwise its findings
        // are not parsed again for nothing.
        let (mut kept, mut asff_scope) = (None, None);
        if let Some(lifecycle) = &self.lifecycle {
            if forced.is_none() {
                forced = decode::detect::detect(&mut file).ok().flatten();
                if std::io::Seek::rewind(&mut file).is_err() {
                    forced = None; // decode reads from the start again and says what is wrong
                }
            }
            // ASFF names no scope of its own; its scan time is the file's modification time
            // (the same on a re-read after a crash).
            asff_scope = (forced == Some(decode::Format::Asff))
                .then(|| lifecycle.asff_scope(&name))
                .flatten()
                .map(|scope| decode::build::Scope {
                    key: format!("asff|{scope}"),
                    scanned: OffsetDateTime::from(
                        meta.modified().unwrap_or(std::time::SystemTime::UNIX_EPOCH),
                    )
                    .format(&Rfc3339)
                    .expect("RFC 3339 formatting of a valid time"),
                });
            if forced != Some(decode::Format::Asff) || asff_scope.is_some() {
                kept = Some(Vec::new());
            }
        }
        let result = decode::decode(file, forced, &options, now, |item| {
            let len = match &item {
                Decoded::Finding(f) => f.json.len(),
                Decoded::Rejected(r) => r.raw.len(),
            };
            let Some(permit) = reserve(len) else {
                return ControlFlow::Break(());
            };
            self.stats.decoded();
            match item {
                Decoded::Finding(finding) => {
                    if let Some(list) = &mut kept {
                        match lifecycle::keep(&finding.json) {
                            Some(k) if list.len() < MAX_LIFECYCLE_FINDINGS => list.push(k),
                            _ => kept = None,
                        }
                    }
                    let queued = Queued { finding, ack: ticket.ack(), permit };
                    if !self.queue.send(queued) {
                        return ControlFlow::Break(()); // the sender is gone: stopping
                    }
                }
                Decoded::Rejected(r) => {
                    debug!(index = r.index, line = r.line, reason = %r.rejection, "finding rejected");
                    let at =
                        if r.line > 0 { format!("line {}", r.line) } else { format!("finding {}", r.index) };
                    let letter = DeadLetter {
                        index: Some(r.index),
                        id: r.id,
                        code: r.rejection.code().to_owned(),
                        message: format!("{at}: {}", r.rejection),
                        raw: r.raw,
                    };
                    ticket.dead_letter(letter, Some(permit));
                }
            }
            ControlFlow::Continue(())
        });
        match result {
            Ok((format, DecodeEnd::Complete(summary))) => {
                self.stats.truncated(u64::from(summary.truncations));
                if summary.truncations > 0 {
                    info!(%format, truncations = summary.truncations, "texts cut to fit ASFF limits");
                }
                debug!(%format, findings = summary.findings, rejected = summary.rejected, "read");
                if let (Some(scope), Some(findings)) = (summary.scope.or(asff_scope), kept) {
                    let _ = self.events.send(AckEvent::Lifecycle { ticket: ticket.id(), scope, findings });
                }
                ticket.read_complete();
            }
            Ok((_, DecodeEnd::Stopped)) => debug!("reading stopped"),
            Err(e) => {
                warn!(error = %e, "cannot decode; the file will be quarantined");
                ticket.quarantine(e.to_string());
            }
        }
    }
}
