//! `[lifecycle] resolve = "archive"`: a Trivy report is the complete picture of its target, so a
//! vulnerability the next report no longer has is archived in Security Hub (hubsim), and one
//! that comes back is active again.

mod common;

use std::time::Duration;

use common::Env;
use serde_json::{Value, json};

fn report(scanned: &str, cves: &[&str]) -> Vec<u8> {
    let vulns: Vec<Value> = cves
        .iter()
        .map(|cve| {
            json!({
                "VulnerabilityID": cve, "PkgName": "openssl", "InstalledVersion": "1.1.1", "FixedVersion": "1.1.2",
                "Severity": "HIGH", "Title": format!("{cve} in openssl"), "Description": "A flaw.",
            })
        })
        .collect();
    json!({
        "SchemaVersion": 2, "CreatedAt": scanned, "ArtifactName": "app:1.0", "ArtifactType": "container_image",
        "Results": [{"Target": "app:1.0 (debian 12.5)", "Class": "os-pkgs", "Type": "debian", "Vulnerabilities": vulns}],
    })
    .to_string()
    .into_bytes()
}

/// hubsim's findings by CVE: (RecordState, UpdatedAt).
fn states(env: &Env) -> std::collections::BTreeMap<String, (String, String)> {
    env.hub
        .findings()
        .iter()
        .map(|f| {
            let cve = f["Vulnerabilities"][0]["Id"].as_str().unwrap_or_default().to_owned();
            let state = f["RecordState"].as_str().unwrap_or("ACTIVE").to_owned();
            (cve, (state, f["UpdatedAt"].as_str().unwrap().to_owned()))
        })
        .collect()
}

async fn settle(env: &Env, want: impl Fn(&std::collections::BTreeMap<String, (String, String)>) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !want(&states(env)) {
        assert!(tokio::time::Instant::now() < deadline, "hubsim holds {:?}", states(env));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.wait_spool_empty(Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vulnerability_the_next_scan_no_longer_reports_is_archived_and_comes_back_active() {
    let env = Env::new().await;
    let state_dir = env.dir.path().join("lifecycle");
    let config =
        env.config(&format!("[lifecycle]\nresolve = \"archive\"\nstate_dir = \"{}\"\n", state_dir.display()));
    let mut daemon = env.spawn(&config);

    // Report A: three vulnerabilities.
    env.drop_file("scan-a.json", &report("2026-11-01T00:00:00Z", &["CVE-1", "CVE-2", "CVE-3"]));
    settle(&env, |s| s.len() == 3).await;

    // Report B: two of them and a new one: CVE-3 is archived, stamped with B's scan time.
    env.drop_file("scan-b.json", &report("2026-11-02T00:00:00Z", &["CVE-1", "CVE-2", "CVE-4"]));
    settle(&env, |s| s.len() == 4 && s["CVE-3"].0 == "ARCHIVED").await;
    let s = states(&env);
    let active: Vec<&str> = s.iter().filter(|(_, (st, _))| st == "ACTIVE").map(|(c, _)| c.as_str()).collect();
    assert_eq!(active, ["CVE-1", "CVE-2", "CVE-4"]);
    assert_eq!(s["CVE-3"], ("ARCHIVED".to_owned(), "2026-11-02T00:00:00Z".to_owned()), "UpdatedAt moved on");

    // Report C: CVE-3 is back (active again, by its normal import), CVE-4 is gone.
    env.drop_file("scan-c.json", &report("2026-11-03T00:00:00Z", &["CVE-1", "CVE-2", "CVE-3"]));
    settle(&env, |s| s["CVE-3"].0 == "ACTIVE" && s["CVE-4"].0 == "ARCHIVED").await;
    assert_eq!(states(&env)["CVE-4"].1, "2026-11-03T00:00:00Z");
    daemon.kill().await.unwrap();

    // The state survives the process: a fresh agent archives against report C.
    let mut daemon = env.spawn(&config);
    env.drop_file("scan-d.json", &report("2026-11-04T00:00:00Z", &["CVE-1"]));
    settle(&env, |s| s["CVE-2"].0 == "ARCHIVED" && s["CVE-3"].0 == "ARCHIVED").await;
    assert_eq!(env.hub.stats().stale, 0, "nothing archived twice");
    daemon.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn without_lifecycle_nothing_is_archived() {
    let env = Env::new().await;
    let mut daemon = env.spawn(&env.config(""));
    env.drop_file("scan-a.json", &report("2026-11-01T00:00:00Z", &["CVE-1", "CVE-2"]));
    settle(&env, |s| s.len() == 2).await;
    env.drop_file("scan-b.json", &report("2026-11-02T00:00:00Z", &["CVE-1"]));
    env.wait_spool_empty(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(states(&env)["CVE-2"].0, "ACTIVE", "resolve = off (the default) leaves it");
    daemon.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn asff_files_named_as_complete_reports_take_part() {
    let env = Env::new().await;
    let state_dir = env.dir.path().join("lifecycle");
    let config = env.config(&format!(
        "[lifecycle]\nresolve = \"archive\"\nstate_dir = \"{}\"\n[[lifecycle.asff]]\npattern = \"prowler-*.json\"\nscope = \"prowler\"\n",
        state_dir.display()
    ));
    let mut daemon = env.spawn(&config);
    let ids =
        |f: &[&str]| serde_json::to_vec(&f.iter().map(|id| common::finding(id)).collect::<Vec<_>>()).unwrap();
    env.drop_file("prowler-1.json", &ids(&["p1", "p2", "p3"]));
    env.drop_file("other-1.json", &ids(&["o1"]));
    env.wait_spool_empty(Duration::from_secs(30)).await;
    env.drop_file("prowler-2.json", &ids(&["p1", "p2"]));
    env.drop_file("other-2.json", &ids(&["o2"]));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while env.hub.finding("p3").is_none_or(|f| f["RecordState"] != "ARCHIVED") {
        assert!(tokio::time::Instant::now() < deadline, "p3 not archived: {:?}", env.hub.finding("p3"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.wait_spool_empty(Duration::from_secs(30)).await;
    let p3 = env.hub.finding("p3").unwrap();
    assert!(p3["UpdatedAt"].as_str().unwrap() > "2024-01-01T00:00:00Z", "{p3}");
    assert!(env.hub.finding("p1").unwrap().get("RecordState").is_none(), "still active");
    assert!(
        env.hub.finding("o1").unwrap().get("RecordState").is_none(),
        "files not named as complete reports take no part"
    );
    daemon.kill().await.unwrap();
}
