//! Golden tests over every real scanner file in `../shared/fixtures/scanners/`: each is detected,
//! converted, and every finding passes the agent's own ASFF validation; Ids are unique within a
//! file and stable across runs; counts match the source.

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use securityhub_agent::decode::build::{Context, TRUNCATION_MARKER};
use securityhub_agent::decode::{self, DecodeEnd, Decoded, Format, Options};
use securityhub_agent::finding::Defaults;
use serde_json::Value;
use time::OffsetDateTime;

fn fixtures(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/scanners").join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e != "md"))
        .collect();
    files.sort();
    files
}

fn options(include_passed: bool) -> Options {
    Options {
        defaults: Defaults {
            region: "eu-west-1".into(),
            account_id: Some("111122223333".into()),
            product_arn: None,
            routes: vec![],
        },
        context: Context::for_host(
            "eu-west-1",
            Some("111122223333"),
            Some("i-0abc"),
            "host",
            "2026-11-29T00:00:00Z".into(),
        ),
        include_passed,
    }
}

struct Converted {
    format: Format,
    findings: Vec<Value>,
    rejected: Vec<String>,
    truncations: u32,
}

fn convert_with(path: &Path, opts: &Options) -> Converted {
    let file = std::fs::File::open(path).unwrap();
    let mut findings = Vec::new();
    let mut rejected = Vec::new();
    let (format, end) = decode::decode(file, None, opts, OffsetDateTime::UNIX_EPOCH, |d| {
        match d {
            Decoded::Finding(f) => findings.push(serde_json::from_slice(&f.json).unwrap()),
            Decoded::Rejected(r) => rejected.push(format!("{}: {}", r.rejection.code(), r.rejection)),
        }
        ControlFlow::Continue(())
    })
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let DecodeEnd::Complete(summary) = end else { panic!("stopped") };
    Converted { format, findings, rejected, truncations: summary.truncations }
}

fn convert(path: &Path) -> Converted {
    convert_with(path, &options(false))
}

fn ids(c: &Converted) -> Vec<String> {
    c.findings.iter().map(|f| f["Id"].as_str().unwrap().to_owned()).collect()
}

/// Every scanner fixture: valid findings only, unique Ids, the same Ids on a second run.
fn check_all(dir: &str, format: Format, expected: impl Fn(&Value) -> usize) {
    let files = fixtures(dir);
    assert!(!files.is_empty());
    for path in files {
        let c = convert(&path);
        assert_eq!(c.format, format, "{}", path.display());
        assert!(c.rejected.is_empty(), "{}: {:?}", path.display(), c.rejected);
        let source = std::fs::read(&path).unwrap();
        if format != Format::Xccdf {
            let doc: Value = serde_json::from_slice(&source).unwrap();
            assert_eq!(c.findings.len(), expected(&doc), "{}", path.display());
        }
        let unique: BTreeSet<String> = ids(&c).into_iter().collect();
        assert_eq!(unique.len(), c.findings.len(), "{}: Ids must be unique", path.display());
        assert_eq!(ids(&convert(&path)), ids(&c), "{}: Ids must be stable", path.display());
        for f in &c.findings {
            assert_eq!(f["Resources"][0]["Id"], "arn:aws:ec2:eu-west-1:111122223333:instance/i-0abc");
            assert_eq!(f["AwsAccountId"], "111122223333");
        }
    }
}

fn arr_len(v: &Value) -> usize {
    v.as_array().map_or(0, Vec::len)
}

#[test]
fn trivy_reports_give_one_finding_per_vulnerability_failed_check_and_secret() {
    check_all("trivy", Format::Trivy, |doc| {
        doc["Results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let failed = r["Misconfigurations"]
                    .as_array()
                    .map_or(0, |m| m.iter().filter(|x| x["Status"] != "PASS").count());
                arr_len(&r["Vulnerabilities"]) + arr_len(&r["Secrets"]) + failed
            })
            .sum()
    });
}

#[test]
fn trivy_same_cve_in_two_packages_is_two_findings_with_packages_and_fix() {
    let path = fixtures("trivy").into_iter().find(|p| p.ends_with("alpine-310.json")).unwrap();
    let c = convert(&path);
    assert_eq!(c.findings.len(), 4, "Trivy's own ASFF template gives these 4 only 2 distinct Ids");
    let f = c
        .findings
        .iter()
        .find(|f| f["Title"].as_str().unwrap().starts_with("CVE-2019-1549 in libssl1.1"))
        .unwrap();
    let pkg = &f["Vulnerabilities"][0]["VulnerablePackages"][0];
    assert_eq!(
        (pkg["Name"].as_str(), pkg["Version"].as_str(), pkg["FixedInVersion"].as_str()),
        (Some("libssl1.1"), Some("1.1.1c-r0"), Some("1.1.1d-r0"))
    );
    assert_eq!(f["Severity"]["Label"], "MEDIUM");
    assert!(f["Remediation"]["Recommendation"]["Text"].as_str().unwrap().contains("1.1.1d-r0"));
    assert_eq!(f["Types"][0], "Software and Configuration Checks/Vulnerabilities/CVE");
    assert!(f["Vulnerabilities"][0]["Cvss"].as_array().is_some_and(|c| !c.is_empty()));
    assert!(f["UpdatedAt"].as_str().unwrap().starts_with("2021-08-25"), "the scan time");
}

#[test]
fn trivy_secrets_never_carry_the_matched_text() {
    let path = fixtures("trivy").into_iter().find(|p| p.ends_with("secrets.json")).unwrap();
    let c = convert(&path);
    assert_eq!(c.findings.len(), 2);
    let text = serde_json::to_string(&c.findings).unwrap();
    for leak in ["AWS_ACCESS_KEY_ID=", "********", "ghp_", "mysecret="] {
        assert!(!text.contains(leak), "{leak} leaked");
    }
    assert!(c.findings.iter().all(|f| f["Types"][0] == "Sensitive Data Identifications/Passwords"));
}

#[test]
fn grype_reports_give_one_finding_per_match() {
    check_all("grype", Format::Grype, |doc| arr_len(&doc["matches"]));
    let path = fixtures("grype").into_iter().find(|p| p.ends_with("ghsa-test.json")).unwrap();
    let c = convert(&path);
    let ghsa = c.findings.iter().find(|f| f["Title"].as_str().unwrap().starts_with("GHSA-cfh5")).unwrap();
    assert_eq!(ghsa["Severity"]["Label"], "MEDIUM", "title-case Medium");
    assert_eq!(ghsa["Vulnerabilities"][0]["Cvss"][0]["BaseScore"], 5.8, "CVSS from relatedVulnerabilities");
    assert_eq!(ghsa["Vulnerabilities"][0]["FixAvailable"], "YES");
    let keycloak =
        convert(&fixtures("grype").into_iter().find(|p| p.ends_with("keycloak-test.json")).unwrap());
    assert_eq!(keycloak.findings.len(), 6, "one CVE in six packages: six findings");
}

#[test]
fn sarif_logs_give_one_finding_per_result() {
    check_all("sarif", Format::Sarif, |doc| {
        doc["runs"].as_array().unwrap().iter().map(|r| arr_len(&r["results"])).sum()
    });
    let grype = convert(
        &fixtures("sarif").into_iter().find(|p| p.ends_with("grype-TestSarifPresenter_image.sarif")).unwrap(),
    );
    let labels: BTreeSet<&str> =
        grype.findings.iter().map(|f| f["Severity"]["Label"].as_str().unwrap()).collect();
    assert_eq!(labels, BTreeSet::from(["HIGH"]), "security-severity 8.2 and 8.5 win over level note/error");
    let trivy =
        convert(&fixtures("sarif").into_iter().find(|p| p.ends_with("trivy-alpine-310.sarif")).unwrap());
    assert_eq!(trivy.findings.len(), 4, "no fingerprints: location and message tell the 4 apart");
}

#[test]
fn xccdf_and_arf_give_failed_rules_with_benchmark_titles() {
    check_all("xccdf", Format::Xccdf, |_| 0);
    let results = convert(
        &fixtures("xccdf")
            .into_iter()
            .find(|p| p.ends_with("test_fix_resultid_by_suffix.xccdf-results.xml"))
            .unwrap(),
    );
    assert_eq!(results.findings.len(), 3, "rule_2 fails in each of the 3 TestResults");
    let arf = convert(
        &fixtures("xccdf").into_iter().find(|p| p.ends_with("test_xccdf_overrides.arf.xml")).unwrap(),
    );
    assert_eq!(arf.findings.len(), 12, "12 fail results");
    for f in &arf.findings {
        assert_eq!(f["Compliance"]["Status"], "FAILED");
        assert!(
            !f["Title"].as_str().unwrap().starts_with("xccdf_"),
            "title from the embedded Benchmark: {}",
            f["Title"]
        );
        assert_eq!(f["Types"][0], "Software and Configuration Checks/Industry and Regulatory Standards");
    }
    let with_pass = convert_with(
        &fixtures("xccdf").into_iter().find(|p| p.ends_with("test_xccdf_overrides.arf.xml")).unwrap(),
        &options(true),
    );
    assert_eq!(with_pass.findings.len(), 23, "12 fail + 11 pass");
}

#[test]
fn long_texts_are_truncated_with_a_marker_not_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.sarif");
    let long = "x".repeat(5000);
    let log = serde_json::json!({"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "t", "rules": [
        {"id": "R1", "shortDescription": {"text": long}, "help": {"text": long}}]}},
        "results": [{"ruleId": "R1", "message": {"text": long}}]}]});
    std::fs::write(&path, log.to_string()).unwrap();
    let c = convert(&path);
    assert_eq!(c.findings.len(), 1);
    let f = &c.findings[0];
    assert!(f["Title"].as_str().unwrap().ends_with(TRUNCATION_MARKER));
    assert_eq!(f["Title"].as_str().unwrap().chars().count(), 256);
    assert_eq!(f["Description"].as_str().unwrap().chars().count(), 1024);
    assert_eq!(f["Remediation"]["Recommendation"]["Text"].as_str().unwrap().chars().count(), 512);
    assert_eq!(c.truncations, 3);
}
