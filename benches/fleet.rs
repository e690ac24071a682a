//! Fleet simulation: N agent processes, each with its own spool and backlog, share one hubsim
//! quota (10 requests/s, burst 30). Reports aggregate goodput as % of the quota, 429s,
//! per-agent delivered counts and Jain's fairness index, for the adaptive agent and for a naive
//! fixed-retry configuration of the same binary (no client-side limit, retry after ≤ 1 s).
//!
//! `cargo bench --bench fleet`; `FLEET_SIZES=10,50`, `FLEET_WINDOW_S=30` and
//! `FLEET_SENDERS=adaptive|naive` (default both) to change.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hubsim::{Credentials, Hub, Options, Quota};

const QUOTA: Quota = Quota { rate: 10.0, burst: 30.0 };
const PER_REQUEST: usize = 100;
/// Findings per backlog file.
const FILE_FINDINGS: usize = 200;
/// Goodput is also reported from this point on, past the first burst and process start.
const WARMUP: Duration = Duration::from_secs(5);

struct Outcome {
    /// Findings stored by hubsim after the warm-up (the first burst and process start).
    after_warmup: usize,
    delivered: Vec<usize>,
    throttled: u64,
    requests: u64,
    /// Findings of finished backlog files that hubsim does not have.
    lost: usize,
}

fn finding(agent: usize, i: usize) -> String {
    serde_json::json!({
        "SchemaVersion": "2018-10-08", "Id": format!("fleet/{agent}/{i}"), "GeneratorId": "fleet",
        "Types": ["Software and Configuration Checks/Vulnerabilities/CVE"],
        "CreatedAt": "2026-11-01T10:00:00Z", "UpdatedAt": "2026-11-01T10:00:00Z",
        "Severity": {"Label": "LOW"}, "Title": format!("fleet finding {i}"), "Description": "fleet",
        "Resources": [{"Type": "Other", "Id": format!("host-{agent}")}],
    })
    .to_string()
}

fn start_agent(dir: &std::path::Path, hub: &Hub, agent: usize, backlog: usize, naive: bool) -> Child {
    let spool = dir.join(format!("spool-{agent}"));
    std::fs::create_dir_all(&spool).unwrap();
    // Files of FILE_FINDINGS each, so that many are finished (and checked) within the window.
    for (k, start) in (0..backlog).step_by(FILE_FINDINGS).enumerate() {
        let text: String =
            (start..(start + FILE_FINDINGS).min(backlog)).map(|i| finding(agent, i) + "\n").collect();
        std::fs::write(spool.join(format!("backlog-{k:05}.ndjson")), text).unwrap();
    }
    let rate = if naive {
        // The baseline: no client-side limit, a fixed retry ceiling of one second.
        "[rate]\nrequests_per_second = 10000.0\nburst = 10000\nadaptive = false\n[retry]\ninitial_backoff = \"1s\"\nmax_backoff = \"1s\"\n"
    } else {
        ""
    };
    let config = dir.join(format!("config-{agent}.toml"));
    std::fs::write(
        &config,
        format!(
            "[spool]\ndir = \"{}\"\n[destination]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\naccount_id = \"123456789012\"\n[log]\nlevel = \"error\"\n[status]\npath = \"{}\"\n{rate}",
            spool.display(),
            hub.endpoint(),
            dir.join(format!("status-{agent}.json")).display()
        ),
    )
    .unwrap();
    Command::new(env!("CARGO_BIN_EXE_securityhub-agent"))
        .args(["run", "--config", config.to_str().unwrap()])
        .env("AWS_ACCESS_KEY_ID", "AKIDFLEET")
        .env("AWS_SECRET_ACCESS_KEY", "fleet")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn run_fleet(rt: &tokio::runtime::Runtime, n: usize, window: Duration, naive: bool) -> Outcome {
    let hub = rt
        .block_on(Hub::start(Options {
            credentials: vec![Credentials { access_key: "AKIDFLEET".into(), secret_key: "fleet".into() }],
            quota: Some(QUOTA),
            ..Options::default()
        }))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Twice each agent's fair share of the window, so nobody runs dry.
    let fair_requests = (QUOTA.burst + QUOTA.rate * window.as_secs_f64()) / n as f64;
    let backlog = (fair_requests * 2.0).ceil() as usize * PER_REQUEST;
    let mut agents: Vec<Child> = (0..n).map(|a| start_agent(dir.path(), &hub, a, backlog, naive)).collect();
    let start = Instant::now();
    let mut at_warmup = None;
    while start.elapsed() < window {
        std::thread::sleep(Duration::from_millis(50));
        if at_warmup.is_none() && start.elapsed() >= WARMUP {
            at_warmup = Some(hub.stats().accepted as usize);
        }
    }
    let stats = hub.stats();
    let mut delivered = vec![0; n];
    for f in hub.findings() {
        let agent: usize = f["Id"].as_str().unwrap().split('/').nth(1).unwrap().parse().unwrap();
        delivered[agent] += 1;
    }
    // Stop every agent as systemd would (SIGTERM, grace period), then count what is lost: a
    // backlog file that is gone must have all its findings at hubsim; one still in the spool is
    // waiting, not lost.
    for a in &agents {
        let _ = Command::new("kill").args(["-TERM", &a.id().to_string()]).status();
    }
    for a in &mut agents {
        let _ = a.wait();
    }
    let stored: std::collections::HashSet<String> =
        hub.findings().iter().map(|f| f["Id"].as_str().unwrap().to_owned()).collect();
    let mut lost = 0;
    for a in 0..n {
        for (k, start) in (0..backlog).step_by(FILE_FINDINGS).enumerate() {
            if !dir.path().join(format!("spool-{a}/backlog-{k:05}.ndjson")).exists() {
                let ids = start..(start + FILE_FINDINGS).min(backlog);
                lost += ids.filter(|i| !stored.contains(&format!("fleet/{a}/{i}"))).count();
            }
        }
    }
    let after_warmup = stats.accepted as usize - at_warmup.unwrap_or(0);
    Outcome { after_warmup, delivered, throttled: stats.throttled, requests: stats.requests, lost }
}

fn jain(x: &[usize]) -> f64 {
    let sum: f64 = x.iter().map(|&v| v as f64).sum();
    let sq: f64 = x.iter().map(|&v| (v as f64).powi(2)).sum();
    if sq == 0.0 { 0.0 } else { sum * sum / (x.len() as f64 * sq) }
}

fn main() {
    if std::env::args().skip(1).any(|a| !a.starts_with("--") && !"fleet".contains(a.as_str())) {
        return;
    }
    let sizes: Vec<usize> = std::env::var("FLEET_SIZES")
        .unwrap_or_else(|_| "10,50".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let window =
        Duration::from_secs(std::env::var("FLEET_WINDOW_S").ok().and_then(|s| s.parse().ok()).unwrap_or(30));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let capacity = (QUOTA.burst + QUOTA.rate * window.as_secs_f64()) * PER_REQUEST as f64;
    println!(
        "fleet sharing one quota of {}/s burst {} for {} s (capacity {capacity:.0} findings)",
        QUOTA.rate,
        QUOTA.burst,
        window.as_secs()
    );
    let steady_capacity = QUOTA.rate * (window - WARMUP).as_secs_f64() * PER_REQUEST as f64;
    println!(
        "| sender | agents | delivered | % of quota | % of quota after {} s | 429s | requests | min/max per agent | Jain | lost |",
        WARMUP.as_secs()
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for &n in &sizes {
        let senders: &[bool] = match std::env::var("FLEET_SENDERS").as_deref() {
            Ok("adaptive") => &[false],
            Ok("naive") => &[true],
            _ => &[false, true],
        };
        for &naive in senders {
            let o = run_fleet(&rt, n, window, naive);
            let total: usize = o.delivered.iter().sum();
            println!(
                "| {} | {n} | {total} | {:.1} % | {:.1} % | {} | {} | {}/{} | {:.3} | {} |",
                if naive { "naive fixed retry" } else { "agent (adaptive)" },
                100.0 * total as f64 / capacity,
                100.0 * o.after_warmup as f64 / steady_capacity,
                o.throttled,
                o.requests,
                o.delivered.iter().min().unwrap(),
                o.delivered.iter().max().unwrap(),
                jain(&o.delivered),
                o.lost
            );
        }
    }
}
