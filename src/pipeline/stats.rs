//! Counters shared by the pipeline's stages, read for the run summary and the log.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// What the pipeline has done since start.
#[derive(Debug, Default)]
pub struct Stats {
    files_finished: AtomicU64,
    files_quarantined: AtomicU64,
    files_closed: AtomicU64,
    findings_decoded: AtomicU64,
    findings_accepted: AtomicU64,
    findings_retried: AtomicU64,
    requests: AtomicU64,
    requests_failed: AtomicU64,
    throttles: AtomicU64,
    last_delivery: AtomicU64,
    truncations: AtomicU64,
    last_error: Mutex<Option<(u64, String)>>,
    rejected: Mutex<BTreeMap<String, u64>>,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    /// Files whose findings were all settled and which were deleted or moved.
    pub files_finished: u64,
    /// Files moved to `failed/` as undecodable or refused.
    pub files_quarantined: u64,
    /// Findings read from files (queued, or rejected by validation).
    pub findings_decoded: u64,
    /// Texts and lists cut to fit ASFF limits.
    pub truncations: u64,
    /// Findings Security Hub accepted.
    pub findings_accepted: u64,
    /// Findings sent again after a transient failure.
    pub findings_retried: u64,
    /// Findings dead-lettered, by error code.
    pub rejected: BTreeMap<String, u64>,
    /// `BatchImportFindings` requests sent.
    pub requests: u64,
    /// Requests that failed as a whole.
    pub requests_failed: u64,
    /// Requests refused for throttling.
    pub throttles: u64,
    /// When Security Hub last accepted a request (Unix seconds; 0: never).
    pub last_delivery_unix: u64,
    /// The last failed request: when (Unix seconds) and what was said.
    pub last_error: Option<(u64, String)>,
}

impl Stats {
    /// A file was finished.
    pub fn file_finished(&self) {
        self.files_finished.fetch_add(1, Relaxed);
    }
    /// A file was quarantined or refused.
    pub fn file_quarantined(&self) {
        self.files_quarantined.fetch_add(1, Relaxed);
    }
    /// A ticket closed, whatever its outcome.
    pub fn file_closed(&self) {
        self.files_closed.fetch_add(1, Relaxed);
    }
    /// Tickets closed so far.
    pub fn files_closed(&self) -> u64 {
        self.files_closed.load(Relaxed)
    }
    /// Texts were cut to fit ASFF limits.
    pub fn truncated(&self, n: u64) {
        self.truncations.fetch_add(n, Relaxed);
    }
    /// A finding was read (queued or rejected).
    pub fn decoded(&self) {
        self.findings_decoded.fetch_add(1, Relaxed);
    }
    /// Findings were accepted.
    pub fn accepted(&self, n: u64) {
        self.findings_accepted.fetch_add(n, Relaxed);
    }
    /// Findings will be sent again.
    pub fn retried(&self, n: u64) {
        self.findings_retried.fetch_add(n, Relaxed);
    }
    /// A finding was dead-lettered with `code`.
    pub fn rejected(&self, code: &str) {
        *self.rejected.lock().unwrap_or_else(|e| e.into_inner()).entry(code.to_owned()).or_default() += 1;
    }
    /// A request went out; `failed` if it failed as a whole, `throttled` if for throttling.
    pub fn request(&self, failed: bool, throttled: bool) {
        self.requests.fetch_add(1, Relaxed);
        self.requests_failed.fetch_add(u64::from(failed), Relaxed);
        self.throttles.fetch_add(u64::from(throttled), Relaxed);
        if !failed {
            self.last_delivery.store(unix_now(), Relaxed);
        }
    }

    /// Remembers the last request failure, for `status`.
    pub fn failed(&self, message: &str) {
        let short: String = message.chars().take(500).collect();
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some((unix_now(), short));
    }

    /// The counters now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            files_finished: self.files_finished.load(Relaxed),
            files_quarantined: self.files_quarantined.load(Relaxed),
            findings_decoded: self.findings_decoded.load(Relaxed),
            truncations: self.truncations.load(Relaxed),
            findings_accepted: self.findings_accepted.load(Relaxed),
            findings_retried: self.findings_retried.load(Relaxed),
            rejected: self.rejected.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            requests: self.requests.load(Relaxed),
            requests_failed: self.requests_failed.load(Relaxed),
            throttles: self.throttles.load(Relaxed),
            last_delivery_unix: self.last_delivery.load(Relaxed),
            last_error: self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }
}
