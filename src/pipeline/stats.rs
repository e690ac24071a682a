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
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
    last_error: Mutex<Option<(u64, String)>>,
    rejected: Mutex<BTreeMap<String, u64>>,
}

/// Upper bounds (seconds) of the request latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A request latency histogram: counts per bucket, total count, sum in seconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Latency {
    /// (upper bound in seconds, requests in this bucket and not a lower one).
    pub buckets: Vec<(f64, u64)>,
    /// Requests measured.
    pub count: u64,
    /// Their total time, seconds.
    pub sum: f64,
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

    /// One request attempt took `took`, whatever its outcome.
    pub fn latency(&self, took: std::time::Duration) {
        let secs = took.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|bound| secs <= *bound) {
            self.latency_buckets[i].fetch_add(1, Relaxed);
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_us.fetch_add(took.as_micros() as u64, Relaxed);
    }

    /// The request latency histogram so far.
    pub fn latency_histogram(&self) -> Latency {
        Latency {
            buckets: LATENCY_BUCKETS
                .iter()
                .zip(&self.latency_buckets)
                .map(|(b, n)| (*b, n.load(Relaxed)))
                .collect(),
            count: self.latency_count.load(Relaxed),
            sum: self.latency_sum_us.load(Relaxed) as f64 / 1e6,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn latency_lands_in_the_first_bucket_that_holds_it() {
        let s = Stats::default();
        for ms in [5, 30, 30, 700, 20_000] {
            s.latency(Duration::from_millis(ms));
        }
        let h = s.latency_histogram();
        let counts: Vec<u64> = h.buckets.iter().map(|(_, n)| *n).collect();
        assert_eq!(counts, [1, 0, 2, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(h.count, 5, "the 20 s request is over every bound");
        assert!((h.sum - 20.765).abs() < 1e-9);
    }
}
