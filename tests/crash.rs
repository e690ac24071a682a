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

/// The crash suite in lifecycle mode: rounds of Trivy reports for several targets, each round
/// delivered while the agent is killed at random moments. At the end every finding of the last
/// round is active and every finding that an earlier round had and the last has not is archived:
/// nothing lost, no archive missed, none undone.
async fn lifecycle_crash_suite(seed: u64, targets: usize, rounds: usize, kills_per_round: usize) {
    eprintln!("lifecycle crash suite: seed {seed}, {targets} targets, {rounds} rounds");
    let mut rng = fastrand::Rng::with_seed(seed);
    let env = Env::new().await;
    let state_dir = env.dir.path().join("lifecycle");
    let config = env.config(&format!(
        "[lifecycle]\nresolve = \"archive\"\nstate_dir = \"{}\"\n[batch]\nmax_in_flight = 1\nmax_findings = 10\n[rate]\nrequests_per_second = 20.0\nburst = 2\n",
        state_dir.display()
    ));
    let cves = |round: usize, target: usize| -> Vec<String> {
        // 60 CVEs a report; each round drops some of the previous ones and adds new ones.
        (0..60).map(|i| format!("CVE-{target}-{}", i + round * 15 + usize::from(i % 7 == 0) * 1000)).collect()
    };
    let report = |round: usize, target: usize| -> Vec<u8> {
        let vulns: Vec<Value> = cves(round, target)
            .iter()
            .map(|c| serde_json::json!({"VulnerabilityID": c, "PkgName": "openssl", "InstalledVersion": "1", "Severity": "HIGH", "Title": c}))
            .collect();
        serde_json::json!({
            "SchemaVersion": 2, "CreatedAt": format!("2026-11-{:02}T00:00:00Z", round + 1),
            "ArtifactName": format!("app-{target}:1.0"), "ArtifactType": "container_image",
            "Results": [{"Target": format!("app-{target}:1.0 (debian 12)"), "Class": "os-pkgs", "Type": "debian", "Vulnerabilities": vulns}],
        })
        .to_string()
        .into_bytes()
    };
    let (mut kills, mut mid) = (0, 0);
    for round in 0..rounds {
        for t in 0..targets {
            env.drop_file(&format!("r{round}-app{t}.json"), &report(round, t));
        }
        for _ in 0..kills_per_round {
            let mut daemon = env.spawn(&config);
            tokio::time::sleep(Duration::from_millis(rng.u64(150..900))).await;
            daemon.kill().await.unwrap();
            daemon.wait().await.unwrap();
            kills += 1;
            mid += usize::from(!env.spool_files().is_empty());
        }
        let mut daemon = env.spawn(&config);
        env.wait_spool_empty(Duration::from_secs(300)).await;
        daemon.kill().await.unwrap();
    }
    // What hubsim should hold: the last round active, everything else that ever appeared archived.
    let by_cve: std::collections::BTreeMap<String, String> = env
        .hub
        .findings()
        .iter()
        .map(|f| {
            let cve = f["Vulnerabilities"][0]["Id"].as_str().unwrap().to_owned();
            (cve, f["RecordState"].as_str().unwrap_or("ACTIVE").to_owned())
        })
        .collect();
    let mut wrong = Vec::new();
    let mut archived = 0;
    for t in 0..targets {
        let last: BTreeSet<String> = cves(rounds - 1, t).into_iter().collect();
        for round in 0..rounds {
            for c in cves(round, t) {
                let want = if last.contains(&c) { "ACTIVE" } else { "ARCHIVED" };
                archived += usize::from(want == "ARCHIVED" && round == 0);
                match by_cve.get(&c) {
                    Some(state) if state == want => {}
                    other => wrong.push(format!("{c}: {other:?}, want {want}")),
                }
            }
        }
    }
    eprintln!(
        "lifecycle crash suite: {} findings at hubsim, {kills} kills ({mid} mid-delivery), {} wrong",
        by_cve.len(),
        wrong.len()
    );
    assert!(archived > 0, "the rounds archive something");
    assert!(mid > 0, "no kill landed mid-delivery: the suite showed nothing");
    assert!(wrong.is_empty(), "{:?}", &wrong[..wrong.len().min(10)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_crash_suite_short() {
    lifecycle_crash_suite(seed(), 3, 3, 2).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "long: CRASH_SEED=N cargo test --test crash lifecycle_crash_suite_full -- --ignored --nocapture"]
async fn lifecycle_crash_suite_full() {
    lifecycle_crash_suite(seed(), 10, 6, 5).await;
}
