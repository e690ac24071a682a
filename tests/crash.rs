//! The crash suite: a backlog of mixed formats delivered while the agent is killed with SIGKILL
//! at random moments (seeded; the seed is printed) and restarted each time. At the end every
//! expected finding Id is at hubsim and the spool is empty; the duplicates (re-sent after a
//! kill; harmless upserts) are counted.
//!
//! CI runs a short version; the full one (≥ 50k findings, 20 rounds) is
//! `CRASH_SEED=7 cargo test --release --test crash -- --ignored --nocapture` (RELIABILITY.md).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::{Env, findings, ndjson};
use serde_json::Value;

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/scanners").join(rel))
        .unwrap()
}

/// A scanner report made distinct per copy (another artifact name: other targets, other Ids).
fn trivy_copy(i: usize) -> Vec<u8> {
    let mut report: Value = serde_json::from_slice(&fixture("trivy/alpine-310.json")).unwrap();
    report["ArtifactName"] = format!("registry.example/app-{i}:1.0").into();
    for r in report["Results"].as_array_mut().unwrap() {
        r["Target"] = format!("registry.example/app-{i}:1.0 (alpine 3.10.2)").into();
    }
    serde_json::to_vec(&report).unwrap()
}

fn grype_copy(i: usize) -> Vec<u8> {
    let mut report: Value = serde_json::from_slice(&fixture("grype/keycloak-test.json")).unwrap();
    report["source"]["target"]["userInput"] = format!("keycloak-{i}").into();
    serde_json::to_vec(&report).unwrap()
}

/// The Ids the agent will send for `bytes`, asked of the agent itself (`validate`).
async fn ids_of(env: &Env, config: &Path, name: &str, bytes: &[u8]) -> Vec<String> {
    let path = env.dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    let out = env
        .agent(&[
            "validate",
            "--output",
            "json",
            "--config",
            config.to_str().unwrap(),
            path.to_str().unwrap(),
        ])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["Id"].as_str().unwrap().to_owned())
        .collect()
}

async fn crash_suite(seed: u64, rounds: usize, asff_files: usize, per_file: usize, reports: usize) {
    eprintln!("crash suite: seed {seed} (CRASH_SEED={seed} reproduces the kill times), {rounds} rounds");
    let mut rng = fastrand::Rng::with_seed(seed);
    let env = Env::new().await;
    // Modest requests in flight so that kills land mid-delivery.
    let config = env.config("[batch]\nmax_in_flight = 2\n[rate]\nrequests_per_second = 50.0\nburst = 10\n");
    let mut expected = BTreeSet::new();
    for f in 0..asff_files {
        let items = findings(&format!("c{f}"), per_file);
        expected.extend(items.iter().map(|v| v["Id"].as_str().unwrap().to_owned()));
        env.drop_file(&format!("asff-{f}.ndjson"), &ndjson(&items));
    }
    for i in 0..reports {
        for (name, bytes) in
            [(format!("trivy-{i}.json"), trivy_copy(i)), (format!("grype-{i}.json"), grype_copy(i))]
        {
            expected.extend(ids_of(&env, &config, &name, &bytes).await);
            env.drop_file(&name, &bytes);
        }
    }
    let files = env.spool_files().len();
    eprintln!("backlog: {} distinct findings in {files} files", expected.len());

    let started = std::time::Instant::now();
    let mut kills_mid_delivery = 0;
    for round in 0..rounds {
        let mut daemon = env.spawn(&config);
        let wait = Duration::from_millis(rng.u64(100..700));
        tokio::time::sleep(wait).await;
        daemon.kill().await.unwrap(); // SIGKILL
        daemon.wait().await.unwrap();
        let left = env.spool_files().len();
        if left > 0 {
            kills_mid_delivery += 1;
        }
        eprintln!("round {round}: killed after {wait:?}; {left} files left");
    }
    let mut daemon = env.spawn(&config);
    env.wait_spool_empty(Duration::from_secs(600)).await;
    daemon.kill().await.unwrap();

    let stored: BTreeSet<String> =
        env.hub.findings().iter().map(|f| f["Id"].as_str().unwrap().to_owned()).collect();
    let missing: Vec<_> = expected.difference(&stored).take(5).collect();
    let stats = env.hub.stats();
    eprintln!(
        "crash suite done in {:?}: {} expected, {} stored, lost {}, duplicates {} (accepted {}), {} of {rounds} kills mid-delivery",
        started.elapsed(),
        expected.len(),
        stored.len(),
        expected.len() - expected.intersection(&stored).count(),
        stats.accepted - stored.len() as u64,
        stats.accepted,
        kills_mid_delivery
    );
    assert!(missing.is_empty(), "lost findings, e.g. {missing:?}");
    assert!(env.spool_files().is_empty(), "{:?}", env.spool_files());
    let failed: Vec<String> = std::fs::read_dir(env.failed())
        .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|n: &String| n != ".partial") // the acknowledger's working directory
        .collect();
    let reports: Vec<String> = failed
        .iter()
        .filter(|n| n.ends_with(".error.json"))
        .map(|n| std::fs::read_to_string(env.failed().join(n)).unwrap())
        .collect();
    assert!(failed.is_empty(), "nothing quarantined or dead-lettered: {failed:?} {reports:?}");
    assert!(kills_mid_delivery > 0, "no kill landed mid-delivery: the suite showed nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_suite_short() {
    crash_suite(seed(), 4, 20, 250, 5).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "long: CRASH_SEED=N cargo test --release --test crash -- --ignored --nocapture"]
async fn crash_suite_full() {
    crash_suite(seed(), 20, 50, 1000, 50).await;
}

fn seed() -> u64 {
    std::env::var("CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| fastrand::u64(..1000))
}
