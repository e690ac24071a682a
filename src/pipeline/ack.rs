//! Acknowledgements: every queued finding carries an [`Ack`] back to its file's [`Ticket`]. The
//! file is closed (and then deleted, moved or quarantined) only when the last reference to its
//! ticket is gone; if any finding was dropped unsettled (shutdown, crash of a task) the file is
//! left in the spool to be read again.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc::UnboundedSender;

use super::queue::Permit;

/// A finding that will not be sent, with the reason, for `failed/`.
#[derive(Debug)]
pub struct DeadLetter {
    /// Position of the finding in its file, when known.
    pub index: Option<u64>,
    /// Its `Id`, when it has one.
    pub id: Option<String>,
    /// Security Hub's `ErrorCode` or the agent's validation code.
    pub code: String,
    /// The message that goes with it.
    pub message: String,
    /// The finding's JSON.
    pub raw: Bytes,
}

/// What happens to a file when its ticket closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every finding was accepted or dead-lettered: remove (or move) the file.
    Finished,
    /// The file cannot be decoded: move it to `failed/` with this reason.
    Quarantine(String),
    /// Something was not settled: leave the file in the spool.
    Unfinished,
}

/// Sent when a ticket closes.
#[derive(Debug)]
pub struct Closed {
    /// Ticket number, unique for this process.
    pub ticket: u64,
    /// The spool file.
    pub path: PathBuf,
    /// What to do with it.
    pub outcome: Outcome,
    /// Findings Security Hub accepted.
    pub accepted: u64,
    /// Findings dead-lettered.
    pub rejected: u64,
    /// Time since the file was claimed.
    pub elapsed: std::time::Duration,
}

/// Messages to the acknowledger, in the order they must be handled.
#[derive(Debug)]
pub enum AckEvent {
    /// Append a dead letter for this ticket's file (the ticket stays open while this is queued).
    DeadLetter {
        /// Keeps the file open until the letter is written.
        ticket: Arc<Ticket>,
        /// The letter.
        letter: DeadLetter,
        /// Memory budget held until written.
        permit: Option<Permit>,
    },
    /// The ticket's last reference is gone.
    Closed(Closed),
    /// The ticket's file is a complete report of this scope with these findings (Id, kept
    /// fields); sent before the file is read completely, so before `Closed`.
    Lifecycle {
        /// Ticket number.
        ticket: u64,
        /// The report's scope.
        scope: crate::decode::build::Scope,
        /// Its findings as queued (dead-lettered ones are taken out when the file closes).
        findings: Vec<(String, serde_json::Value)>,
    },
}

/// One claimed spool file while its findings are on their way.
#[derive(Debug)]
pub struct Ticket {
    id: u64,
    path: PathBuf,
    started: Instant,
    read_complete: AtomicBool,
    abandoned: AtomicBool,
    quarantine: Mutex<Option<String>>,
    accepted: AtomicU64,
    rejected: AtomicU64,
    events: UnboundedSender<AckEvent>,
}

impl Ticket {
    /// Opens a ticket for `path`; `events` receives its dead letters and its close.
    pub fn new(id: u64, path: PathBuf, events: UnboundedSender<AckEvent>) -> Arc<Self> {
        Arc::new(Self {
            id,
            path,
            started: Instant::now(),
            read_complete: AtomicBool::new(false),
            abandoned: AtomicBool::new(false),
            quarantine: Mutex::new(None),
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            events,
        })
    }

    /// The ticket's number.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Something of this file could not be settled: leave the file in the spool.
    pub fn abandon(&self) {
        self.abandoned.store(true, Ordering::Release);
    }

    /// The spool file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The reader got to the end of the file.
    pub fn read_complete(&self) {
        self.read_complete.store(true, Ordering::Release);
    }

    /// The file is malformed; it is quarantined once its queued findings are settled.
    pub fn quarantine(&self, reason: String) {
        *self.quarantine.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
    }

    /// An [`Ack`] for one more finding of this file.
    pub fn ack(self: &Arc<Self>) -> Ack {
        Ack { ticket: Some(self.clone()) }
    }

    /// Dead-letters a finding that never entered the queue (rejected while decoding).
    pub fn dead_letter(self: &Arc<Self>, letter: DeadLetter, permit: Option<Permit>) {
        self.ack().dead_letter(letter, permit);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let quarantine = self.quarantine.get_mut().unwrap_or_else(|e| e.into_inner()).take();
        let outcome = match quarantine {
            _ if self.abandoned.load(Ordering::Acquire) => Outcome::Unfinished,
            Some(reason) => Outcome::Quarantine(reason),
            None if self.read_complete.load(Ordering::Acquire) => Outcome::Finished,
            None => Outcome::Unfinished,
        };
        // If the acknowledger is gone the process is stopping; the file stays for the next start.
        let _ = self.events.send(AckEvent::Closed(Closed {
            ticket: self.id,
            path: std::mem::take(&mut self.path),
            outcome,
            accepted: self.accepted.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            elapsed: self.started.elapsed(),
        }));
    }
}

/// The obligation to settle one finding. Dropping it unsettled keeps the file in the spool.
#[derive(Debug)]
pub struct Ack {
    ticket: Option<Arc<Ticket>>,
}

impl Ack {
    /// Security Hub accepted the finding.
    pub fn accepted(mut self) {
        if let Some(t) = self.ticket.take() {
            t.accepted.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The finding will not be sent; it goes to the dead-letter file with its reason.
    pub fn dead_letter(mut self, letter: DeadLetter, permit: Option<Permit>) {
        if let Some(ticket) = self.ticket.take() {
            ticket.rejected.fetch_add(1, Ordering::Relaxed);
            let events = ticket.events.clone();
            if let Err(unsent) = events.send(AckEvent::DeadLetter { ticket, letter, permit }) {
                // Nobody can write the letter: the file must stay.
                if let AckEvent::DeadLetter { ticket, .. } = unsent.0 {
                    ticket.abandon();
                }
            }
        }
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            t.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    fn closed(rx: &mut mpsc::UnboundedReceiver<AckEvent>) -> Closed {
        loop {
            match rx.try_recv().expect("an event") {
                AckEvent::Closed(c) => return c,
                AckEvent::DeadLetter { .. } | AckEvent::Lifecycle { .. } => continue,
            }
        }
    }

    fn letter() -> DeadLetter {
        DeadLetter { index: Some(0), id: None, code: "X".into(), message: "m".into(), raw: Bytes::new() }
    }

    #[test]
    fn file_finishes_only_after_every_finding_is_settled() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let t = Ticket::new(1, "f".into(), tx);
        let (a, b) = (t.ack(), t.ack());
        t.read_complete();
        drop(t);
        a.accepted();
        assert!(rx.try_recv().is_err(), "closed while a finding is in flight");
        b.dead_letter(letter(), None);
        let event = rx.try_recv().unwrap();
        assert!(matches!(event, AckEvent::DeadLetter { .. }));
        assert!(rx.try_recv().is_err(), "the dead letter holds the ticket open");
        drop(event);
        let c = closed(&mut rx);
        assert_eq!((c.outcome, c.accepted, c.rejected), (Outcome::Finished, 1, 1));
    }

    #[test]
    fn dropped_finding_leaves_file_unfinished() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let t = Ticket::new(1, "f".into(), tx);
        let a = t.ack();
        t.read_complete();
        drop(t);
        drop(a);
        assert_eq!(closed(&mut rx).outcome, Outcome::Unfinished);
    }

    #[test]
    fn unread_file_is_unfinished_and_malformed_one_quarantined() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        drop(Ticket::new(1, "f".into(), tx.clone()));
        assert_eq!(closed(&mut rx).outcome, Outcome::Unfinished);
        let t = Ticket::new(2, "g".into(), tx);
        t.ack().accepted();
        t.quarantine("bad".into());
        drop(t);
        let c = closed(&mut rx);
        assert_eq!((c.outcome, c.accepted), (Outcome::Quarantine("bad".into()), 1));
    }
}
