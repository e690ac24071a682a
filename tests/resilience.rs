//! Nothing lost across an abrupt kill; memory held by backpressure while Security Hub stalls.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use hubsim::{Faults, Options, RequestFault};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

fn delivered_ids(env: &Env) -> BTreeSet<String> {
    env.hub.findings().iter().map(|f| f["Id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_after_sigkill_mid_delivery_loses_nothing() {
    // Slow responses so that the kill lands while files are half delivered.
    let slow = Faults {
        request_rate: 1.0,
        request_kinds: vec![RequestFault::Delay(Duration::from_millis(60))],
        ..Faults::default()
    };
    let env = Env::with_options(Options { faults: slow, ..Options::default() }).await;
    let mut expected = BTreeSet::new();
    for f in 0..10 {
        let items = findings(&format!("k{f}"), 250);
        expected.extend(items.iter().map(|v| v["Id"].as_str().unwrap().to_owned()));
        env.drop_file(&format!("k{f}.json"), json!(items).to_string().as_bytes());
    }
    let config = env.config("[batch]\nmax_in_flight = 1");
    let mut child = env.spawn(&config);
    let got = env.hub.wait_for(600, WAIT).await;
    assert!(got >= 600, "only {got} delivered before the kill");
    child.kill().await.unwrap(); // SIGKILL
    child.wait().await.unwrap();
    let before = delivered_ids(&env).len();
    let left = env.spool_files();
    assert!(
        before < expected.len() && !left.is_empty(),
        "the kill came too late: {before} delivered, {left:?} left"
    );

    env.hub.set_faults(Faults::default());
    let (ok, log) = env.run_once(&config).await;
    assert!(ok, "{log}");
    assert_eq!(delivered_ids(&env), expected, "every finding arrived");
    assert!(env.spool_files().is_empty(), "{:?}", env.spool_files());
    let stats = env.hub.stats();
    eprintln!(
        "re-sent after the kill (duplicates, harmless upserts): {}",
        stats.accepted - expected.len() as u64
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn backpressure_holds_memory_while_security_hub_stalls() {
    let env = Env::new().await;
    env.hub.set_stalled(true);
    // About 60 MB of findings in one file: far more than the queue may hold.
    let n = 120_000;
    let mut text = Vec::with_capacity(n * 520);
    for i in 0..n {
        let mut f = finding(&format!("bp-{i}"));
        f["Description"] = json!("d".repeat(200));
        text.extend_from_slice(f.to_string().as_bytes());
        text.push(b'\n');
    }
    let file_mb = text.len() / 1_000_000;
    env.drop_file("huge.ndjson", &text);
    drop(text);
    let config = env.config("[queue]\nmax_findings = 2000\nmax_bytes = 8388608\n[batch]\nmax_in_flight = 2\n[retry]\nrequest_timeout = \"30s\"");
    let mut child = env.spawn(&config);
    let pid = child.id().unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while env.hub.stats().requests < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no requests");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // Give the reader time to run ahead if nothing held it back.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let peak_mb = peak_rss_kib(pid) / 1024;
    eprintln!("file {file_mb} MB, peak RSS while stalled {peak_mb} MiB");
    assert!(peak_mb < 40, "peak RSS {peak_mb} MiB with a {file_mb} MB file: the queue is not bounded");
    assert_eq!(env.hub.stats().max_concurrent, 2, "max_in_flight holds");
    assert_eq!(env.spool_files(), ["huge.ndjson"]);

    env.hub.set_stalled(false);
    assert_eq!(env.hub.wait_for(n, Duration::from_secs(120)).await, n);
    env.wait_spool_empty(WAIT).await;
    let peak_mb = peak_rss_kib(pid) / 1024;
    eprintln!("peak RSS after delivering everything {peak_mb} MiB");
    assert!(peak_mb < 40, "peak RSS {peak_mb} MiB");
    child.kill().await.unwrap();
}
