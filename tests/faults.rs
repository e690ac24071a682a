//! The fault and outage suites.
//!
//! Faults: hubsim fails 30 % of requests (500, 503, 429, dropped connections, responses slower
//! than the client's timeout) and per finding 30 % transiently and some permanently. Every
//! transient failure ends delivered, every permanent one in `failed/` with its reason, memory
//! bounded.
//!
//! Outage: Security Hub goes away (connections refused) while files keep arriving, then comes
//! back with the real quota (10 requests/s, burst 30): the backlog drains at the quota, memory
//! stays flat, nothing is lost.
//!
//! CI runs short versions; the long ones are `cargo test --release --test faults -- --ignored
//! --nocapture` (RELIABILITY.md).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{ACCESS_KEY, Env, SECRET_KEY, findings, ndjson};
use hubsim::{Credentials, Faults, Hub, Options, Quota, RequestFault};

fn ids(items: &[serde_json::Value]) -> impl Iterator<Item = String> + '_ {
    items.iter().map(|v| v["Id"].as_str().unwrap().to_owned())
}

fn stored_ids(hub: &Hub) -> BTreeSet<String> {
    hub.findings().iter().map(|f| f["Id"].as_str().unwrap().to_owned()).collect()
}

/// Ids dead-lettered in every `failed/*.error.json`, with their codes.
fn dead_letters(env: &Env) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(env.failed()).into_iter().flatten() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if let Some(file) = name.strip_suffix(".error.json") {
            let report = env.report(file);
            for r in report["rejected"].as_array().into_iter().flatten() {
                out.push((r["Id"].as_str().unwrap().to_owned(), r["ErrorCode"].as_str().unwrap().to_owned()));
            }
        }
    }
    out
}

async fn fault_suite(files: usize, per_file: usize, seed: u64) {
    let faults = Faults {
        request_rate: 0.3,
        request_kinds: vec![
            RequestFault::Internal,
            RequestFault::Unavailable,
            RequestFault::Throttle,
            RequestFault::Drop,
            RequestFault::Delay(Duration::from_millis(2500)), // past request_timeout (2 s)
        ],
        finding_transient_rate: 0.3,
        finding_invalid_rate: 0.02,
    };
    let env = Env::with_options(Options { faults, seed, ..Options::default() }).await;
    let mut expected = BTreeSet::new();
    for f in 0..files {
        let items = findings(&format!("f{f}"), per_file);
        expected.extend(ids(&items));
        env.drop_file(&format!("f{f}.ndjson"), &ndjson(&items));
    }
    let started = Instant::now();
    let mut daemon = env.spawn(&env.config("[batch]\nmax_in_flight = 8\n"));
    let pid = daemon.id().unwrap();
    env.wait_spool_empty(Duration::from_secs(900)).await;
    let rss = common::peak_rss_kib(pid);
    daemon.kill().await.unwrap();

    let stored = stored_ids(&env.hub);
    let dead = dead_letters(&env);
    let dead_ids: BTreeSet<String> = dead.iter().map(|(id, _)| id.clone()).collect();
    let stats = env.hub.stats();
    eprintln!(
        "fault suite (seed {seed}): {} findings in {:?}; {} delivered, {} dead-lettered; hubsim injected {} request \
         faults, {} finding failures; {} requests; duplicates {}; peak RSS {} MiB",
        expected.len(),
        started.elapsed(),
        stored.len(),
        dead_ids.len(),
        stats.injected,
        stats.failed_findings,
        stats.requests,
        stats.accepted - stored.len() as u64,
        rss / 1024
    );
    assert!(dead.iter().all(|(_, code)| code == "InvalidInput"), "only permanent failures are dead-lettered");
    assert!(stored.is_disjoint(&dead_ids), "a dead-lettered finding was also delivered");
    let settled: BTreeSet<String> = stored.union(&dead_ids).cloned().collect();
    assert_eq!(settled, expected, "every finding delivered or dead-lettered with its reason");
    assert!(!dead_ids.is_empty() && stats.injected > 0, "faults were injected");
    assert!(rss < 64 * 1024, "peak RSS {rss} KiB");
}

#[tokio::test(flavor = "multi_thread")]
async fn fault_suite_short() {
    fault_suite(10, 300, 11).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "long: cargo test --release --test faults -- --ignored --nocapture"]
async fn fault_suite_full() {
    fault_suite(50, 1000, 11).await;
}

fn quota_hub() -> Options {
    Options {
        credentials: vec![Credentials { access_key: ACCESS_KEY.into(), secret_key: SECRET_KEY.into() }],
        quota: Some(Quota { rate: 10.0, burst: 30.0 }),
        ..Options::default()
    }
}

async fn outage_suite(outage: Duration, files_during: usize, per_file: usize) {
    let env = Env::new().await;
    let addr = env.hub.addr();
    let mut expected = BTreeSet::new();
    // Before: a little delivered. At the agent's defaults: 10 requests/s, burst 30, adaptive.
    let config = env.config("[rate]\nrequests_per_second = 10.0\nburst = 30\n");
    let first = findings("before", 200);
    expected.extend(ids(&first));
    env.drop_file("before.ndjson", &ndjson(&first));
    let mut daemon = env.spawn(&config);
    let pid = daemon.id().unwrap();
    env.wait_spool_empty(Duration::from_secs(60)).await;
    let before = stored_ids(&env.hub);

    // The outage: the hub goes away; files keep arriving.
    let Env { dir, spool, hub } = env;
    drop(hub);
    let step = outage / files_during as u32;
    let mut rss_samples = Vec::new();
    for f in 0..files_during {
        let items = findings(&format!("during{f}"), per_file);
        expected.extend(ids(&items));
        let tmp = spool.join(format!(".d{f}.tmp"));
        std::fs::write(&tmp, ndjson(&items)).unwrap();
        std::fs::rename(&tmp, spool.join(format!("during{f}.ndjson"))).unwrap();
        tokio::time::sleep(step).await;
        rss_samples.push(current_rss_kib(pid));
    }
    assert!(daemon.try_wait().unwrap().is_none(), "the agent survives the outage");

    // Back, with Security Hub's own quota.
    let hub = Hub::start_on(addr, quota_hub()).await.expect("hubsim back on the same address");
    let env = Env { dir, spool, hub };
    let back = Instant::now();
    env.wait_spool_empty(Duration::from_secs(900)).await;
    let drained = back.elapsed();
    let peak = common::peak_rss_kib(pid);
    daemon.kill().await.unwrap();

    let after = stored_ids(&env.hub);
    let all: BTreeSet<String> = before.union(&after).cloned().collect();
    let backlog = expected.len() - before.len();
    let stats = env.hub.stats();
    let goodput = after.len() as f64 / drained.as_secs_f64();
    eprintln!(
        "outage suite: {outage:?} down while {files_during} files ({backlog} findings) arrived; RSS during the outage \
         {:?} MiB; drained in {drained:?} = {goodput:.0} findings/s against a quota of 1,000/s; {} throttled; \
         peak RSS {} MiB",
        rss_samples.iter().map(|k| k / 1024).collect::<Vec<_>>(),
        stats.throttled,
        peak / 1024
    );
    assert_eq!(all, expected, "nothing lost");
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
    let spread = rss_samples.iter().max().unwrap() - rss_samples.iter().min().unwrap();
    assert!(spread < 16 * 1024, "memory flat during the outage: {rss_samples:?} KiB");
}

fn current_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn outage_suite_short() {
    outage_suite(Duration::from_secs(5), 10, 300).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "long: cargo test --release --test faults -- --ignored --nocapture"]
async fn outage_suite_full() {
    outage_suite(Duration::from_secs(120), 120, 500).await;
}
