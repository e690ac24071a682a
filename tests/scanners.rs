//! Scanner output through the real daemon into hubsim, the `validate` command, and a real
//! scanner (OpenSCAP from Debian) run on this machine.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::time::Duration;

use common::*;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/scanners").join(rel)
}

#[tokio::test(flavor = "multi_thread")]
async fn scanner_reports_of_every_format_are_delivered_about_this_instance() {
    let env = Env::new().await;
    for (rel, name) in [
        ("trivy/alpine-310.json", "trivy.json"),
        ("grype/keycloak-test.json", "grype.json"),
        ("sarif/codeql-2.5.4-codeQL-output.sarif", "codeql.sarif"),
        ("xccdf/test_xccdf_overrides.arf.xml", "arf.xml"),
    ] {
        env.drop_file(name, &std::fs::read(fixture(rel)).unwrap());
    }
    let config = env.config("[destination]\ninstance_id = \"i-0123456789abcdef0\"");
    let (ok, log) = env.run_once(&config).await;
    assert!(ok, "{log}");
    let findings = env.hub.findings();
    assert_eq!(findings.len(), 4 + 6 + 72 + 12, "{log}");
    for f in &findings {
        assert_eq!(f["Resources"][0]["Type"], "AwsEc2Instance");
        assert_eq!(
            f["Resources"][0]["Id"],
            format!("arn:aws:ec2:eu-west-1:{ACCOUNT}:instance/i-0123456789abcdef0")
        );
    }
    assert!(env.spool_files().is_empty());
    assert_eq!(env.hub.stats().failed_findings, 0, "hubsim's own checks accept every converted finding");

    // The same reports again: the same Ids, so Security Hub updates instead of duplicating.
    env.drop_file("trivy-again.json", &std::fs::read(fixture("trivy/alpine-310.json")).unwrap());
    let (ok, log) = env.run_once(&config).await;
    assert!(ok, "{log}");
    assert_eq!(env.hub.findings().len(), 94);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_format_is_quarantined_naming_what_was_tried() {
    let env = Env::new().await;
    env.drop_file("mystery.json", br#"{"hello": "world"}"#);
    let (ok, log) = env.run_once(&env.config("")).await;
    assert!(ok, "{log}");
    let reason = env.report("mystery.json")["reason"].as_str().unwrap().to_owned();
    for format in ["ASFF", "Trivy", "Grype", "SARIF", "XCCDF"] {
        assert!(reason.contains(format), "{reason}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn forced_format_overrides_detection() {
    let env = Env::new().await;
    // Valid SARIF forced to be read as Trivy: the Trivy reader finds no report structure.
    env.drop_file("scan.sarif", &std::fs::read(fixture("sarif/gitleaks-sarif_simple.sarif")).unwrap());
    let (ok, log) =
        env.run_once(&env.config("[[formats.force]]\npattern = \"*.sarif\"\nformat = \"trivy\"")).await;
    assert!(ok, "{log}");
    assert!(env.hub.findings().is_empty());
    let reason = env.report("scan.sarif")["reason"].as_str().unwrap().to_owned();
    assert!(reason.starts_with("Trivy JSON report:"), "{reason}");
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_prints_what_would_be_sent_and_fails_on_rejections() {
    let env = Env::new().await;
    let config = env.config("");
    let good = fixture("trivy/alpine-310.json");
    let out = env
        .agent(&[
            "validate",
            "--config",
            config.to_str().unwrap(),
            "--output",
            "json",
            good.to_str().unwrap(),
        ])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4);
    assert!(lines.iter().all(|f| f["AwsAccountId"] == ACCOUNT && f["GeneratorId"] == "trivy"));
    assert_eq!(env.hub.stats().requests, 0, "validate sends nothing");

    let bad = fixture("asff/prowler-docs-example.array.json");
    let out = env
        .agent(&["validate", "--config", config.to_str().unwrap(), bad.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("rejected  InvalidField") && stdout.contains("ACCOUNT_ID"), "{stdout}");
}

fn count(text: &str, result: &str) -> usize {
    text.matches(&format!("<result>{result}</result>")).count()
}

/// Runs the real OpenSCAP scanner against this machine and ships its results through the daemon:
/// a small XCCDF 1.2 benchmark of our own (`tests/data/openscap/`, OVAL checks of /etc/shadow,
/// /etc/passwd, sshd and packages) as plain XCCDF results, and Debian's SCAP Security Guide
/// (`ssg-debian`) standard profile as an ARF report. Needs `openscap-scanner` and `ssg-debian`
/// (`.ci/run` installs them); skipped with a message where `oscap` is not installed.
#[tokio::test(flavor = "multi_thread")]
async fn real_openscap_scan_of_this_machine_is_delivered() {
    if StdCommand::new("oscap").arg("--version").output().is_err() {
        eprintln!("SKIPPED: oscap is not installed (apt-get install openscap-scanner ssg-debian)");
        return;
    }
    let env = Env::new().await;
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/openscap");
    let results = env.dir.path().join("results.xml");
    let run = StdCommand::new("oscap")
        .args(["xccdf", "eval", "--profile", "xccdf_agent.test_profile_default", "--results"])
        .arg(&results)
        .arg(data.join("host-checks-xccdf.xml"))
        .output()
        .expect("oscap runs");
    // oscap exits 2 when a rule failed, 1 on an error.
    assert_ne!(run.status.code(), Some(1), "{}", String::from_utf8_lossy(&run.stderr));
    let text = std::fs::read_to_string(&results).expect("oscap wrote results");
    let mut expected = count(&text, "fail") + count(&text, "error");
    assert_eq!(expected + count(&text, "pass"), 5, "every check evaluated: {text}");
    assert!(expected >= 1, "sshd_config without PermitRootLogin no (or no sshd) fails on any test machine");
    env.drop_file("oscap-results.xml", text.as_bytes());

    let ssg = ["ssg-debian12-ds.xml", "ssg-debian11-ds.xml"]
        .iter()
        .map(|n| Path::new("/usr/share/xml/scap/ssg/content").join(n))
        .find(|p| p.exists());
    match ssg {
        Some(content) => {
            let arf = env.dir.path().join("ssg-arf.xml");
            let run = StdCommand::new("oscap")
                .args([
                    "xccdf",
                    "eval",
                    "--profile",
                    "xccdf_org.ssgproject.content_profile_standard",
                    "--results-arf",
                ])
                .arg(&arf)
                .arg(&content)
                .output()
                .expect("oscap runs");
            assert_ne!(run.status.code(), Some(1), "{}", String::from_utf8_lossy(&run.stderr));
            let text = std::fs::read_to_string(&arf).unwrap();
            let failed = count(&text, "fail") + count(&text, "error");
            // SSG 0.1.65 has no Debian 12 content; on Debian 12 its Debian 11 rules are notapplicable.
            eprintln!(
                "SSG {}: {failed} failed, {} notapplicable",
                content.display(),
                count(&text, "notapplicable")
            );
            expected += failed;
            env.drop_file("ssg-arf.xml", text.as_bytes());
        }
        None => eprintln!("note: no ssg-debian content installed; only the local benchmark was evaluated"),
    }
    let (ok, log) = env.run_once(&env.config("")).await;
    assert!(ok, "{log}");
    assert_eq!(env.hub.wait_for(expected, Duration::from_secs(5)).await, expected, "{log}");
    let sshd = env
        .hub
        .findings()
        .into_iter()
        .find(|f| f["Title"] == "SSH denies root login")
        .expect("the sshd rule");
    assert_eq!(sshd["Compliance"]["Status"], "FAILED");
    assert_eq!(sshd["Severity"]["Label"], "MEDIUM");
    assert_eq!(
        sshd["Remediation"]["Recommendation"]["Text"],
        "Set PermitRootLogin no in /etc/ssh/sshd_config"
    );
    eprintln!("OpenSCAP: {expected} failed rules delivered");
    assert!(env.spool_files().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn send_delivers_named_files_once_and_fails_on_rejections() {
    let env = Env::new().await;
    let config = env.config("");
    let trivy = fixture("trivy/alpine-310.json");
    // The default --failed-dir is relative to the working directory: keep it in the test's.
    let out = env
        .agent(&["send", "--config", config.to_str().unwrap(), trivy.to_str().unwrap()])
        .current_dir(env.dir.path())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("4 findings accepted, 0 rejected"), "{stdout}");
    assert_eq!(env.hub.findings().len(), 4);
    assert!(trivy.exists(), "the original is left alone");

    let failed = env.dir.path().join("send-failed");
    let prowler = fixture("asff/prowler-docs-example.array.json");
    let out = env
        .agent(&[
            "send",
            "--config",
            config.to_str().unwrap(),
            "--failed-dir",
            failed.to_str().unwrap(),
            prowler.to_str().unwrap(),
        ])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success(), "a rejected finding fails the command");
    let report = std::fs::read_dir(&failed)
        .unwrap()
        .find(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".error.json"));
    assert!(report.is_some(), "the rejection is reported under --failed-dir");
}

#[tokio::test(flavor = "multi_thread")]
async fn completions_and_man_page_come_from_the_cli_definition() {
    let env = Env::new().await;
    let out = env.agent(&["completions", "bash"]).output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("check-config") && text.contains("validate"), "{text}");
    let out = env.agent(&["man"]).output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(".TH securityhub-agent 1") && text.contains("check\\-config"),
        "{text}"
    );
}

/// A large scanner report: its findings go on one by one as they are converted, so memory holds
/// the report and not every finding at once (a 9,000-vulnerability Trivy report took 230 MiB
/// when they were collected first).
#[tokio::test(flavor = "multi_thread")]
async fn a_large_trivy_report_is_converted_in_bounded_memory() {
    let env = Env::new().await;
    let vulns: Vec<serde_json::Value> = (0..9000)
        .map(|i| {
            serde_json::json!({
                "VulnerabilityID": format!("CVE-2026-{i:07}"), "PkgName": format!("lib{}", i % 97),
                "InstalledVersion": "1.2.3", "FixedVersion": "1.2.4", "Severity": "HIGH",
                "Title": format!("libexample: heap overflow {i}"),
                "Description": "A heap buffer overflow in libexample's parser allows a remote attacker to cause a denial of service.",
                "PrimaryURL": format!("https://avd.aquasec.com/nvd/cve-2026-{i:07}"),
            })
        })
        .collect();
    let report = serde_json::json!({
        "SchemaVersion": 2, "ArtifactName": "app:1.0", "ArtifactType": "container_image",
        "Results": [{"Target": "app:1.0 (debian 12.5)", "Class": "os-pkgs", "Type": "debian", "Vulnerabilities": vulns}],
    });
    env.drop_file("big-trivy.json", report.to_string().as_bytes());
    let mut daemon = env.spawn(&env.config(""));
    let pid = daemon.id().unwrap();
    env.wait_spool_empty(Duration::from_secs(120)).await;
    let rss = common::peak_rss_kib(pid);
    daemon.kill().await.unwrap();
    assert_eq!(env.hub.findings().len(), 9000);
    eprintln!("peak RSS converting 9,000 vulnerabilities: {} MiB", rss / 1024);
    assert!(rss < 64 * 1024, "peak RSS {rss} KiB");
}
