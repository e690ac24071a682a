//! Whole-path benchmark: spool files → `securityhub-agent run --once` (release build, real SDK,
//! SigV4) → hubsim on loopback without quota. Reports findings/s, CPU seconds and peak RSS.
//!
//! `cargo bench --bench pipeline`; sizes via `BENCH_FINDINGS` (throughput run, default 200000)
//! and `BENCH_BACKLOG` (backlog run, default 1000000). The agent is pinned to CPU 0 with
//! `taskset` when available, hubsim runs in this process.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hubsim::{Credentials, Hub, Options};

#[path = "workload.rs"]
mod workload;

const PER_FILE: usize = 10_000;

struct Run {
    findings: usize,
    bytes: u64,
    wall: Duration,
    cpu: Duration,
    peak_rss_kib: u64,
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// NDJSON files of realistic findings (~1.1 KB each).
fn generate(spool: &Path, n: usize) -> u64 {
    let mut total = 0;
    for file in 0..n.div_ceil(PER_FILE) {
        let mut text = Vec::with_capacity(PER_FILE * 1200);
        for i in file * PER_FILE..((file + 1) * PER_FILE).min(n) {
            let f = workload::finding(i);
            serde_json::to_writer(&mut text, &f).unwrap();
            text.push(b'\n');
        }
        total += text.len() as u64;
        std::fs::write(spool.join(format!("bench-{file:05}.ndjson")), text).unwrap();
    }
    total
}

fn proc_stats(pid: u32) -> Option<(u64, Duration)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((hwm, Duration::from_millis(ticks * 10))) // USER_HZ is 100 on Linux
}

fn run_agent(rt: &tokio::runtime::Runtime, n: usize) -> Run {
    let hub = rt
        .block_on(Hub::start(Options {
            credentials: vec![Credentials { access_key: "AKIDBENCH".into(), secret_key: "bench".into() }],
            ..Options::default()
        }))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    let bytes = generate(&spool, n);
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[spool]\ndir = \"{}\"\n[destination]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\naccount_id = \"123456789012\"\n[rate]\nrequests_per_second = 100000.0\nburst = 100000\n[log]\nlevel = \"warn\"\n[status]\npath = \"{}\"\n",
            spool.display(),
            hub.endpoint(),
            dir.path().join("status.json").display()
        ),
    )
    .unwrap();
    let agent = env!("CARGO_BIN_EXE_securityhub-agent");
    let pinned = Command::new("taskset").arg("-V").stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    let mut cmd = if pinned { Command::new("taskset") } else { Command::new(agent) };
    if pinned {
        cmd.args(["-c", "0", agent]);
    }
    cmd.args(["run", "--once", "--config", config.to_str().unwrap()])
        .env("AWS_ACCESS_KEY_ID", "AKIDBENCH")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    let start = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    let (mut peak, mut cpu) = (0, Duration::ZERO);
    loop {
        if let Some((h, c)) = proc_stats(pid) {
            (peak, cpu) = (h, c);
        }
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "agent failed: {status}");
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let wall = start.elapsed();
    let stored = hub.findings().len();
    assert_eq!(stored, n, "every finding must arrive");
    Run { findings: n, bytes, wall, cpu, peak_rss_kib: peak }
}

fn report(name: &str, r: &Run) {
    println!(
        "{name:<10} {:>9} findings {:>7.1} MB  wall {:>6.2} s  {:>9.0} findings/s  cpu {:>6.2} s  {:>9.0} findings/cpu-s  peak RSS {:>5.1} MiB",
        r.findings,
        r.bytes as f64 / 1e6,
        r.wall.as_secs_f64(),
        r.findings as f64 / r.wall.as_secs_f64(),
        r.cpu.as_secs_f64(),
        r.findings as f64 / r.cpu.as_secs_f64().max(0.01),
        r.peak_rss_kib as f64 / 1024.0,
    );
}

fn main() {
    // `cargo bench` passes --bench; a filter that does not match this bench skips it.
    if std::env::args().skip(1).any(|a| !a.starts_with("--") && !"pipeline".contains(a.as_str())) {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let throughput = env_usize("BENCH_FINDINGS", 200_000);
    let backlog = env_usize("BENCH_BACKLOG", 1_000_000);
    println!("whole path into hubsim (no quota), agent pinned to one CPU where taskset exists");
    report("throughput", &run_agent(&rt, throughput));
    report("backlog", &run_agent(&rt, backlog));
}
