//! The status file: the daemon writes a small JSON report every few seconds (atomically, into
//! its state directory); `securityhub-agent status` reads and explains it. The first thing to run
//! when something is wrong.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::pipeline::stats::Snapshot;

/// What the daemon reports about itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// Process id.
    pub pid: u32,
    /// When this report was written (Unix seconds).
    pub written_unix: u64,
    /// Seconds between reports, for staleness checks.
    pub interval_s: u64,
    /// Files waiting in the spool, and the age of the oldest (seconds).
    pub backlog_files: u64,
    /// Bytes waiting in the spool.
    pub backlog_bytes: u64,
    /// Age of the oldest waiting file, seconds.
    pub oldest_file_age_s: u64,
    /// Findings held in memory (queued, in a request or waiting for a retry).
    pub in_memory_findings: u64,
    /// Each destination (`ACCOUNT/REGION`) with the request rate it is allowed now (requests/s).
    pub destinations: Vec<(String, f64)>,
    /// The counters since start.
    pub counters: Snapshot,
    /// `[lifecycle]` scopes, when resolving is on.
    #[serde(default)]
    pub lifecycle: Option<Scopes>,
}

/// The lifecycle scopes the agent keeps.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Scopes {
    /// Scopes with a recorded report.
    pub scopes: u64,
    /// Scopes whose last report is older than `stale_after` (their findings are left as they
    /// are): up to 10, oldest first, as (scope, age in seconds).
    pub stale: Vec<(String, u64)>,
    /// How many are stale in all.
    pub stale_count: u64,
}

/// Counts the scopes in `state_dir` and lists those not reported for longer than `stale_after`.
pub fn scopes(state_dir: &Path, now: std::time::SystemTime, stale_after: Duration) -> Scopes {
    let mut out = Scopes::default();
    let Ok(entries) = std::fs::read_dir(state_dir) else { return out };
    let mut stale = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().ends_with(".json") || name.to_string_lossy().starts_with('.') {
            continue;
        }
        out.scopes += 1;
        let age = e.metadata().ok().and_then(|m| m.modified().ok()).and_then(|m| now.duration_since(m).ok());
        if age.is_some_and(|a| a > stale_after) {
            stale.push((e.path(), age.unwrap_or_default().as_secs()));
        }
    }
    out.stale_count = stale.len() as u64;
    stale.sort_by_key(|s| std::cmp::Reverse(s.1));
    out.stale = stale
        .into_iter()
        .take(10)
        .filter_map(|(path, age)| {
            let state: crate::spool::lifecycle::State =
                serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
            Some((state.scope, age))
        })
        .collect();
    out
}

/// Spool backlog: (files, bytes, age of the oldest in seconds); agent subdirectories excluded.
pub fn backlog(dir: &Path, now: std::time::SystemTime) -> (u64, u64, u64) {
    let Ok(entries) = std::fs::read_dir(dir) else { return (0, 0, 0) };
    let (mut files, mut bytes, mut oldest) = (0, 0, 0);
    for e in entries.flatten() {
        if !crate::spool::scan::is_candidate(&e.file_name()) {
            continue;
        }
        let Ok(meta) = e.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        files += 1;
        bytes += meta.len();
        let age = meta.modified().ok().and_then(|m| now.duration_since(m).ok()).map_or(0, |d| d.as_secs());
        oldest = oldest.max(age);
    }
    (files, bytes, oldest)
}

/// Writes `report` to `path` atomically (temporary file, then rename).
pub fn write(path: &Path, report: &Report) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(report)?)?;
    std::fs::rename(tmp, path)
}

/// Reads a report.
pub fn read(path: &Path) -> std::io::Result<Report> {
    let bytes = std::fs::read(path)?;
    serde_json::from_slice(&bytes).map_err(std::io::Error::other)
}

fn ago(now: u64, then: u64) -> String {
    if then == 0 {
        return "never".into();
    }
    let d = Duration::from_secs(now.saturating_sub(then));
    format!("{} ago", humantime::format_duration(d))
}

/// Whether the report is older than three intervals (the daemon is gone or stuck).
pub fn is_stale(report: &Report, now_unix: u64) -> bool {
    now_unix.saturating_sub(report.written_unix) > 3 * report.interval_s.max(1)
}

/// The human-readable explanation of a report at `now_unix`.
pub fn render(r: &Report, now_unix: u64) -> String {
    let c = &r.counters;
    let rejected: u64 = c.rejected.values().sum();
    let mut out = String::new();
    let state = if is_stale(r, now_unix) {
        format!("NOT RUNNING or stuck: the last report is {}", ago(now_unix, r.written_unix))
    } else {
        format!("running (pid {}), report {}", r.pid, ago(now_unix, r.written_unix))
    };
    out.push_str(&format!("securityhub-agent: {state}\n"));
    out.push_str(&format!(
        "backlog:        {} files, {} bytes in the spool (oldest {}s); {} findings in memory\n",
        r.backlog_files, r.backlog_bytes, r.oldest_file_age_s, r.in_memory_findings
    ));
    out.push_str(&format!("last delivery:  {}\n", ago(now_unix, c.last_delivery_unix)));
    match &c.last_error {
        Some((when, msg)) => out.push_str(&format!("last error:     {} — {msg}\n", ago(now_unix, *when))),
        None => out.push_str("last error:     none\n"),
    }
    out.push_str(&format!("throttled:      {} requests so far\n", c.throttles));
    for (name, rate) in &r.destinations {
        out.push_str(&format!("destination:    {name}: {rate:.2} requests/s allowed\n"));
    }
    out.push_str(&format!(
        "findings:       {} decoded, {} accepted, {} dead-lettered, {} sent again\n",
        c.findings_decoded, c.findings_accepted, rejected, c.findings_retried
    ));
    for (code, n) in &c.rejected {
        out.push_str(&format!("  dead-lettered {code}: {n}\n"));
    }
    if let Some(l) = &r.lifecycle {
        out.push_str(&format!(
            "lifecycle:      {} scopes, {} not reported lately (left as they are)\n",
            l.scopes, l.stale_count
        ));
        for (scope, age) in &l.stale {
            out.push_str(&format!(
                "  stale {scope}: last report {}\n",
                ago(now_unix, now_unix.saturating_sub(*age))
            ));
        }
    }
    out.push_str(&format!(
        "files:          {} finished, {} quarantined; requests: {} sent, {} failed\n",
        c.files_finished, c.files_quarantined, c.requests, c.requests_failed
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            pid: 42,
            written_unix: 1000,
            interval_s: 5,
            backlog_files: 2,
            backlog_bytes: 300,
            oldest_file_age_s: 7,
            in_memory_findings: 10,
            destinations: vec![("111122223333/eu-west-1".into(), 9.5)],
            lifecycle: None,
            counters: Snapshot {
                last_delivery_unix: 990,
                last_error: Some((995, "503 ServiceUnavailable".into())),
                ..Snapshot::default()
            },
        }
    }

    #[test]
    fn scopes_not_reported_lately_are_listed_oldest_first() {
        use crate::decode::build::Scope;
        let (_dir, state_dir, spool) = crate::spool::lifecycle::tests::dirs();
        for key in ["trivy|a|image", "trivy|b|image", "grype|c"] {
            let scope = Scope { key: key.into(), scanned: "t".into() };
            crate::spool::lifecycle::resolve(&state_dir, &spool, &scope, vec![]).unwrap();
        }
        let now = std::time::SystemTime::now();
        let age = |key: &str, days: u64| {
            let f = std::fs::File::options()
                .write(true)
                .open(crate::spool::lifecycle::state_path(&state_dir, key))
                .unwrap();
            f.set_modified(now - Duration::from_secs(days * 86_400)).unwrap();
        };
        age("trivy|a|image", 9);
        age("grype|c", 30);
        let s = scopes(&state_dir, now, Duration::from_secs(7 * 86_400));
        assert_eq!((s.scopes, s.stale_count), (3, 2));
        assert_eq!(s.stale.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["grype|c", "trivy|a|image"]);
        let mut r = report();
        r.lifecycle = Some(s);
        let text = render(&r, 1000);
        assert!(text.contains("lifecycle:      3 scopes, 2 not reported lately"), "{text}");
    }

    #[test]
    fn renders_the_questions_an_operator_asks() {
        let text = render(&report(), 1002);
        assert!(text.contains("running (pid 42), report 2s ago"), "{text}");
        assert!(text.contains("2 files, 300 bytes"), "{text}");
        assert!(text.contains("last delivery:  12s ago"), "{text}");
        assert!(text.contains("last error:     7s ago — 503 ServiceUnavailable"), "{text}");
    }

    #[test]
    fn an_old_report_says_the_daemon_is_not_running() {
        assert!(render(&report(), 1100).contains("NOT RUNNING or stuck"));
        assert!(!is_stale(&report(), 1014) && is_stale(&report(), 1016));
    }

    #[test]
    fn written_reports_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        write(&path, &report()).unwrap();
        assert_eq!(read(&path).unwrap(), report());
    }
}
