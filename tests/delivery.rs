//! End to end over loopback HTTP: spool → the real binary (real AWS SDK, SigV4) → hubsim.

mod common;

use std::time::Duration;

use common::*;
use hubsim::{Faults, Options, RequestFault};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn each_asff_shape_is_delivered_and_the_spool_emptied() {
    let env = Env::new().await;
    env.drop_file("array.json", json!(findings("arr", 3)).to_string().as_bytes());
    env.drop_file("envelope.json", json!({"Findings": findings("env", 2)}).to_string().as_bytes());
    env.drop_file("single.json", serde_json::to_vec_pretty(&finding("one-0")).unwrap().as_slice());
    env.drop_file("lines.ndjson", &ndjson(&findings("nd", 4)));
    let (ok, log) = env.run_once(&env.config("")).await;
    assert!(ok, "{log}");
    assert_eq!(env.hub.findings().len(), 10, "{log}");
    let f = env.hub.finding("env-1").expect("delivered");
    assert_eq!(f["AwsAccountId"], ACCOUNT);
    assert_eq!(f["ProductArn"], format!("arn:aws:securityhub:eu-west-1:{ACCOUNT}:product/{ACCOUNT}/default"));
    assert_eq!(f["Title"], "Finding env-1");
    assert!(env.spool_files().is_empty(), "{:?}", env.spool_files());
    assert_eq!(env.hub.stats().bad_signatures, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn real_asff_fixtures_are_delivered_as_validated() {
    let env = Env::new().await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/scanners/asff");
    for name in
        ["awsdocs-sample-finding-fsbp.json", "inspector-one_vuln.array.json", "trivy-alpine-310.asff.json"]
    {
        env.drop_file(name, &std::fs::read(dir.join(name)).unwrap());
    }
    // The fixtures name their own accounts and Regions: the agent takes only configured ones.
    let hub = env.hub.endpoint();
    let destinations =
        [("123456789012", "us-east-2"), ("123456789123", "eu-west-1"), ("123456789012", "test-region")]
            .map(|(account, region)| Env::destination(account, region, &hub))
            .concat();
    let (ok, log) = env.run_once(&env.config(&destinations)).await;
    assert!(ok, "{log}");
    // Trivy's template gives 4 findings only 2 distinct Ids (see PROVENANCE.md): 1 + 1 + 2 stored.
    assert_eq!(env.hub.findings().len(), 4);
    assert_eq!(env.hub.stats().accepted, 6);
    let sample = env
        .hub
        .finding("arn:aws:securityhub:us-east-2:123456789012:subscription/aws-foundational-security-best-practices/v/1.0.0/CloudTrail.2/finding/a1b2c3d4-5678-90ab-cdef-EXAMPLE11111")
        .expect("the AWS sample finding");
    // Fields the agent does not read travel unchanged.
    let original: Value =
        serde_json::from_slice(&std::fs::read(dir.join("awsdocs-sample-finding-fsbp.json")).unwrap())
            .unwrap();
    assert_eq!(sample, original);
}

#[tokio::test(flavor = "multi_thread")]
async fn splits_101_findings_into_100_and_1() {
    let env = Env::new().await;
    env.drop_file("big.json", json!(findings("n", 101)).to_string().as_bytes());
    let (ok, log) = env.run_once(&env.config("")).await;
    assert!(ok, "{log}");
    let stats = env.hub.stats();
    assert_eq!((stats.requests, stats.largest_request, stats.accepted), (2, 100, 101));
    assert_eq!(stats.invalid_requests, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn finding_over_240_kb_is_dead_lettered_alone() {
    let env = Env::new().await;
    let mut big = finding("big");
    big["ProductFields"] = json!({"blob": "x".repeat(250_000)});
    env.drop_file("mixed.json", json!([finding("a"), big, finding("b")]).to_string().as_bytes());
    let (ok, log) = env.run_once(&env.config("")).await;
    assert!(ok, "{log}");
    assert!(env.hub.finding("a").is_some() && env.hub.finding("b").is_some());
    assert!(env.hub.finding("big").is_none());
    let report = env.report("mixed.json");
    assert_eq!(report["rejected"][0]["Id"], "big");
    assert_eq!(report["rejected"][0]["ErrorCode"], "FindingTooLarge");
    let letters = std::fs::read_to_string(env.failed().join("mixed.json.rejected.ndjson")).unwrap();
    let letter: Value = serde_json::from_str(letters.lines().next().unwrap()).unwrap();
    assert_eq!(letter["Finding"]["ProductFields"]["blob"].as_str().unwrap().len(), 250_000);
    assert!(env.spool_files().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_file_is_quarantined_with_report_and_others_still_delivered() {
    let env = Env::new().await;
    let mut text = json!(findings("t", 3)).to_string();
    text.truncate(text.len() - 40);
    env.drop_file("truncated.json", text.as_bytes());
    env.drop_file("binary.bin", &[0x00, 0xff, 0x13, 0x37]);
    env.drop_file("good.json", json!(findings("g", 2)).to_string().as_bytes());
    let (ok, log) = env.run_once(&env.config("")).await;
    assert!(ok, "{log}");
    assert!(env.hub.finding("g-0").is_some() && env.hub.finding("g-1").is_some());
    let report = env.report("truncated.json");
    let reason = report["reason"].as_str().unwrap();
    assert!(reason.contains("truncated") && reason.contains("line 1"), "{reason}");
    assert_eq!(
        std::fs::read(env.failed().join("truncated.json")).unwrap(),
        text.as_bytes(),
        "kept byte for byte"
    );
    let reason = env.report("binary.bin")["reason"].as_str().unwrap().to_owned();
    assert!(
        reason.contains("not a format the agent reads; tried ASFF") && reason.contains("SARIF"),
        "{reason}"
    );
    assert!(env.spool_files().is_empty(), "{:?}", env.spool_files());
}

#[tokio::test(flavor = "multi_thread")]
async fn symlink_is_refused_and_its_target_never_read() {
    let env = Env::new().await;
    let secret = env.dir.path().join("secret.json");
    std::fs::write(&secret, json!([finding("secret")]).to_string()).unwrap();
    std::os::unix::fs::symlink(&secret, env.spool.join("link.json")).unwrap();
    let (ok, log) = env.run_once(&env.config("")).await;
    assert!(ok, "{log}");
    assert!(env.hub.findings().is_empty());
    assert!(env.failed().join("link.json").symlink_metadata().unwrap().file_type().is_symlink());
    let reason = env.report("link.json")["reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("symbolic link"), "{reason}");
    assert!(secret.exists(), "the target is untouched");
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_5xx_and_dropped_connections_are_retried_until_delivered() {
    let faults = Faults {
        request_rate: 0.6,
        request_kinds: vec![
            RequestFault::Throttle,
            RequestFault::Internal,
            RequestFault::Unavailable,
            RequestFault::Drop,
        ],
        ..Faults::default()
    };
    let env = Env::with_options(Options { faults, seed: 7, ..Options::default() }).await;
    for f in 0..5 {
        env.drop_file(&format!("f{f}.json"), json!(findings(&format!("f{f}"), 100)).to_string().as_bytes());
    }
    let (ok, log) = env.run_once(&env.config("[batch]\nmax_findings = 50")).await;
    assert!(ok, "{log}");
    assert_eq!(env.hub.findings().len(), 500);
    let stats = env.hub.stats();
    assert!(stats.injected >= 5 && stats.throttled >= 1, "{stats:?}");
    assert!(env.spool_files().is_empty());
    assert!(!env.failed().join("f0.json.error.json").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_findings_are_handled_one_by_one() {
    let faults = Faults { finding_invalid_rate: 0.2, finding_transient_rate: 0.3, ..Faults::default() };
    let env = Env::with_options(Options { faults, seed: 3, ..Options::default() }).await;
    env.drop_file("batch.json", json!(findings("p", 200)).to_string().as_bytes());
    let (ok, log) = env.run_once(&env.config("")).await;
    assert!(ok, "{log}");
    let delivered: std::collections::BTreeSet<String> =
        env.hub.findings().iter().map(|f| f["Id"].as_str().unwrap().to_owned()).collect();
    let report = env.report("batch.json");
    let rejected: std::collections::BTreeSet<String> = report["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["ErrorCode"], "InvalidInput", "{r}");
            r["Id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert!(!rejected.is_empty() && rejected.len() < 100, "{}", rejected.len());
    assert!(delivered.is_disjoint(&rejected));
    assert_eq!(delivered.len() + rejected.len(), 200, "every finding accepted or dead-lettered");
    // Transient per-finding failures were sent again rather than dead-lettered.
    assert!(env.hub.stats().failed_findings > rejected.len() as u64);
    assert!(env.spool_files().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_signature_is_refused_and_nothing_is_lost() {
    let env = Env::new().await;
    env.drop_file("a.json", json!(findings("s", 3)).to_string().as_bytes());
    let config = env.config("");
    let mut child = agent_command(&["run", "--config", config.to_str().unwrap()], "not-the-secret")
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while env.hub.stats().bad_signatures < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no signed attempts seen");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    child.kill().await.unwrap();
    assert!(env.hub.findings().is_empty());
    assert_eq!(env.spool_files(), ["a.json"], "kept for when access is fixed");
    // With the right key the same file goes through.
    let (ok, log) = env.run_once(&config).await;
    assert!(ok, "{log}");
    assert_eq!(env.hub.findings().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn daemon_delivers_files_renamed_in_and_stops_on_sigterm() {
    let env = Env::new().await;
    // No rescan during the test: the file must come through inotify.
    let mut child = env.spawn(&env.config("[spool]\nrescan_interval = \"1h\""));
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.drop_file("later.json", json!(findings("later", 5)).to_string().as_bytes());
    assert_eq!(env.hub.wait_for(5, WAIT).await, 5, "picked up through inotify");
    env.wait_spool_empty(WAIT).await;
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::time::timeout(WAIT, child.wait()).await.expect("stops").unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_hub_stalled_keeps_the_file() {
    let env = Env::new().await;
    env.hub.set_stalled(true);
    let mut child = env.spawn(&env.config(""));
    env.drop_file("pending.json", json!(findings("q", 10)).to_string().as_bytes());
    let deadline = tokio::time::Instant::now() + WAIT;
    while env.hub.stats().requests == 0 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status =
        tokio::time::timeout(WAIT, child.wait()).await.expect("stops after the grace period").unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(env.spool_files(), ["pending.json"]);
    assert!(
        env.failed().read_dir().unwrap().all(|e| e.unwrap().file_type().unwrap().is_dir()),
        "nothing dead-lettered"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fifo_and_directory_are_moved_aside_without_blocking() {
    let env = Env::new().await;
    let fifo = env.spool.join("pipe.json");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    std::fs::create_dir(env.spool.join("subdir")).unwrap();
    env.drop_file("good.json", json!(findings("g", 1)).to_string().as_bytes());
    let (ok, log) = env.run_once(&env.config("")).await;
    assert!(ok, "{log}");
    assert_eq!(env.hub.findings().len(), 1);
    assert!(env.report("pipe.json")["reason"].as_str().unwrap().contains("FIFO"));
    assert!(env.report("subdir")["reason"].as_str().unwrap().contains("directory"));
    assert!(!fifo.exists() && env.failed().join("pipe.json").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn finished_files_can_be_moved_to_done() {
    let env = Env::new().await;
    env.drop_file("keep.json", json!(findings("m", 2)).to_string().as_bytes());
    let (ok, log) = env.run_once(&env.config("[spool]\non_success = \"move\"")).await;
    assert!(ok, "{log}");
    assert_eq!(env.hub.findings().len(), 2);
    assert!(env.spool.join("done/keep.json").is_file());
    assert!(env.spool_files().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_config_fails_at_start_with_file_line_and_key() {
    let env = Env::new().await;
    let path = env.dir.path().join("bad.toml");
    std::fs::write(&path, "[destination]\nregoin = \"eu-west-1\"\n").unwrap();
    for cmd in ["check-config", "run"] {
        let out = env.agent(&[cmd, "--config", path.to_str().unwrap()]).output().await.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{cmd}");
        let expected = format!("{}:2:1: unknown field `regoin`", path.display());
        assert!(stderr.contains(&expected) && stderr.contains("did you mean \"region\""), "{cmd}: {stderr}");
    }
    let out =
        env.agent(&["check-config", "--config", env.config("").to_str().unwrap()]).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_have_one_object_per_line_and_a_line_per_finished_file() {
    let env = Env::new().await;
    env.drop_file("logged.json", json!(findings("l", 2)).to_string().as_bytes());
    let (ok, log) = env.run_once(&env.config("[log]\nformat = \"json\"")).await;
    assert!(ok, "{log}");
    let lines: Vec<Value> =
        log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    let finished = lines.iter().find(|l| l["message"] == "finished").expect("a line per finished file");
    assert!(finished["file"].as_str().unwrap().ends_with("logged.json"));
    assert_eq!((finished["accepted"].as_u64(), finished["rejected"].as_u64()), (Some(2), Some(0)));
    assert!(!log.contains(SECRET_KEY), "credentials never logged");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_from_a_stranger_is_refused_with_its_owner() {
    let env = Env::new().await;
    let path = env.drop_file("stranger.json", json!(findings("x", 1)).to_string().as_bytes());
    // Only root can give a file away; elsewhere this test has nothing to show.
    if !std::process::Command::new("chown").args(["4242:4242"]).arg(&path).status().unwrap().success() {
        eprintln!("SKIPPED: cannot chown (not root)");
        return;
    }
    env.drop_file("own.json", json!(findings("o", 1)).to_string().as_bytes());
    let (ok, log) = env.run_once(&env.config("")).await;
    assert!(ok, "{log}");
    assert!(env.hub.finding("o-0").is_some() && env.hub.finding("x-0").is_none());
    let reason = env.report("stranger.json")["reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("owned by uid 4242, gid 4242"), "{reason}");
    // Allowing that group lets it through.
    std::fs::rename(env.failed().join("stranger.json"), env.spool.join("stranger.json")).unwrap();
    let (ok, log) = env.run_once(&env.config("[spool]\nallowed_groups = [4242]")).await;
    assert!(ok, "{log}");
    assert!(env.hub.finding("x-0").is_some());
}
