//! Customer-hosted on EC2: with no `[destination]` Region or account, the agent takes them and
//! the instance id from IMDSv2 (a loopback stand-in that behaves like the real one), and signs
//! with the instance profile's credentials, also after they rotate.

mod common;

use std::time::Duration;

use hubsim::imds::{Imds, Instance, RoleCredentials};
use hubsim::{Credentials, Hub, Options};
use tokio::process::Command;

const IMDS_ACCOUNT: &str = "444455556666";

fn role_creds(key: &str, valid_for: Duration) -> RoleCredentials {
    RoleCredentials {
        credentials: Credentials { access_key: key.into(), secret_key: format!("{key}-secret") },
        token: format!("{key}-session-token"),
        valid_for,
    }
}

fn instance(credentials: Vec<RoleCredentials>) -> Instance {
    Instance {
        region: "ap-southeast-2".into(),
        account_id: IMDS_ACCOUNT.into(),
        instance_id: "i-0fedcba9876543210".into(),
        role: "scanner-role".into(),
        credentials,
    }
}

/// The agent as on EC2: no static keys, instance metadata at `imds`.
fn agent_on_ec2(args: &[&str], imds: &str) -> Command {
    let mut cmd = common::bare_agent(args);
    cmd.env("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds);
    cmd
}

/// A config with nothing about the destination but the stand-in's endpoint.
fn config(dir: &std::path::Path, spool: &std::path::Path, hub: &Hub) -> std::path::PathBuf {
    let path = dir.join("config.toml");
    let text = format!(
        "[spool]\ndir = \"{}\"\nsettle_time = \"0s\"\n[batch]\nflush_interval = \"50ms\"\n[destination]\nendpoint_url = \"{}\"\n",
        spool.display(),
        hub.endpoint()
    );
    std::fs::write(&path, text).unwrap();
    path
}

async fn hub_accepting(keys: &[&RoleCredentials]) -> Hub {
    let credentials = keys.iter().map(|k| k.credentials.clone()).collect();
    Hub::start(Options { credentials, ..Options::default() }).await.unwrap()
}

fn drop_report(spool: &std::path::Path, name: &str) {
    let report = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/scanners/trivy/alpine-310.json");
    let tmp = spool.join(format!(".{name}"));
    std::fs::copy(report, &tmp).unwrap();
    std::fs::rename(tmp, spool.join(name)).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn on_ec2_no_destination_is_needed_and_requests_are_signed_with_the_instance_role() {
    let creds = role_creds("ASIAINSTANCEROLE1", Duration::from_secs(3600));
    let imds = Imds::start(instance(vec![creds.clone()])).await.unwrap();
    let hub = hub_accepting(&[&creds]).await;
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    drop_report(&spool, "trivy.json");
    let out = agent_on_ec2(
        &["run", "--once", "--config", config(dir.path(), &spool, &hub).to_str().unwrap()],
        &imds.endpoint(),
    )
    .output()
    .await
    .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let findings = hub.findings();
    assert_eq!(findings.len(), 4, "{log}");
    for f in &findings {
        assert_eq!(f["AwsAccountId"], IMDS_ACCOUNT);
        assert_eq!(
            f["ProductArn"],
            format!("arn:aws:securityhub:ap-southeast-2:{IMDS_ACCOUNT}:product/{IMDS_ACCOUNT}/default")
        );
        assert_eq!(f["Resources"][0]["Type"], "AwsEc2Instance");
        assert_eq!(
            f["Resources"][0]["Id"],
            format!("arn:aws:ec2:ap-southeast-2:{IMDS_ACCOUNT}:instance/i-0fedcba9876543210")
        );
    }
    assert_eq!(hub.stats().signed_by.get("ASIAINSTANCEROLE1"), Some(&1));
    let stats = imds.stats();
    assert!(stats.tokens >= 1 && stats.refused == 0, "IMDSv2 tokens used: {stats:?}");
    assert!(
        !log.contains("ASIAINSTANCEROLE1-secret") && !log.contains("session-token"),
        "credentials never logged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rotated_instance_credentials_are_picked_up() {
    // The first credentials live 15 s; the SDK refreshes 5-10 s before expiry; then the next.
    let first = role_creds("ASIAFIRSTKEY", Duration::from_secs(15));
    let second = role_creds("ASIASECONDKEY", Duration::from_secs(3600));
    let imds = Imds::start(instance(vec![first.clone(), second.clone()])).await.unwrap();
    let hub = hub_accepting(&[&first, &second]).await;
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    let config = config(dir.path(), &spool, &hub);
    let mut daemon = agent_on_ec2(&["run", "--config", config.to_str().unwrap()], &imds.endpoint())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop_report(&spool, "first.json");
    assert_eq!(hub.wait_for(4, Duration::from_secs(20)).await, 4);
    assert_eq!(hub.stats().signed_by.get("ASIAFIRSTKEY"), Some(&1));
    tokio::time::sleep(Duration::from_secs(11)).await;
    // Same findings, newer scan: a new request, which must be signed with the rotated key.
    let mut report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../shared/fixtures/scanners/trivy/alpine-310.json"),
        )
        .unwrap(),
    )
    .unwrap();
    report["CreatedAt"] = serde_json::json!("2026-11-29T12:00:00Z");
    let tmp = spool.join(".second.json");
    std::fs::write(&tmp, report.to_string()).unwrap();
    std::fs::rename(&tmp, spool.join("second.json")).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !hub.stats().signed_by.contains_key("ASIASECONDKEY") {
        assert!(tokio::time::Instant::now() < deadline, "{:?} {:?}", hub.stats(), imds.stats());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(imds.stats().credentials_served >= 2);
    assert_eq!(
        hub.finding(hub.findings()[0]["Id"].as_str().unwrap()).unwrap()["UpdatedAt"],
        "2026-11-29T12:00:00Z"
    );
    daemon.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn without_imds_or_region_the_agent_stops_with_one_clear_error() {
    // A port with nothing listening: connection refused, as off EC2.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let hub = Hub::start(Options::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    let started = std::time::Instant::now();
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        agent_on_ec2(
            &["run", "--once", "--config", config(dir.path(), &spool, &hub).to_str().unwrap()],
            &format!("http://127.0.0.1:{port}"),
        )
        .output(),
    )
    .await
    .expect("no hang")
    .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(log.contains("no AWS Region") && log.contains("IMDSv2"), "{log}");
    assert!(log.contains("hop limit"), "the warning names the usual cause: {log}");
    eprintln!("failed after {:?}", started.elapsed());
}

fn partner_role(external_id: &str) -> hubsim::sts::Role {
    hubsim::sts::Role {
        arn: "arn:aws:iam::777788889999:role/partner-import".into(),
        external_id: Some(external_id.into()),
        credentials: Credentials {
            access_key: "ASIACUSTOMERROLE".into(),
            secret_key: "customer-role-secret".into(),
        },
    }
}

/// A hubsim that accepts the agent's own keys (for STS) and the role's (for Security Hub).
async fn hub_with_role(role: hubsim::sts::Role) -> Hub {
    let own = Credentials { access_key: "AKIDPARTNER".into(), secret_key: "partner-secret".into() };
    let credentials = vec![own, role.credentials.clone()];
    Hub::start(Options { credentials, roles: vec![role], ..Options::default() }).await.unwrap()
}

/// The partner's agent: its own keys, not on EC2.
fn partner_agent(args: &[&str]) -> Command {
    let mut cmd = common::bare_agent(args);
    cmd.env("AWS_ACCESS_KEY_ID", "AKIDPARTNER")
        .env("AWS_SECRET_ACCESS_KEY", "partner-secret")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
}

fn role_config(
    dir: &std::path::Path,
    spool: &std::path::Path,
    hub: &Hub,
    external_id: &str,
) -> std::path::PathBuf {
    let path = dir.join("config.toml");
    let text = format!(
        "[spool]\ndir = \"{}\"\nsettle_time = \"0s\"\n[batch]\nflush_interval = \"50ms\"\n[retry]\naccess_denied_pause = \"1s\"\n\
         [destination]\nregion = \"eu-west-1\"\nendpoint_url = \"{}\"\naccount_id = \"777788889999\"\n\
         role_arn = \"arn:aws:iam::777788889999:role/partner-import\"\nexternal_id = \"{external_id}\"\n[status]\npath = \"{}\"\n",
        spool.display(),
        hub.endpoint(),
        dir.join("status.json").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A hubsim whose role wants external id `ext-7f3a`, a spool holding a Trivy report, and a
/// config that assumes the role with `external_id`.
async fn partner_setup(external_id: &str) -> (Hub, tempfile::TempDir, std::path::PathBuf) {
    let hub = hub_with_role(partner_role("ext-7f3a")).await;
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    drop_report(&spool, "trivy.json");
    let config = role_config(dir.path(), &spool, &hub, external_id);
    (hub, dir, config)
}

#[tokio::test(flavor = "multi_thread")]
async fn partner_assumes_the_customer_role_with_its_external_id() {
    let (hub, _dir, config) = partner_setup("ext-7f3a").await;
    let out = partner_agent(&["run", "--once", "--config", config.to_str().unwrap()]).output().await.unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert_eq!(hub.findings().len(), 4, "{log}");
    let stats = hub.stats();
    assert_eq!(stats.assume_role_ok, 1, "{stats:?}");
    assert_eq!(stats.signed_by.get("ASIACUSTOMERROLE"), Some(&1), "imports signed with the role: {stats:?}");
    assert!(
        !log.contains("ext-7f3a") && !log.contains("customer-role-secret"),
        "external id and credentials never logged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_external_id_is_a_clear_error_without_a_retry_storm() {
    let (hub, dir, config) = partner_setup("not-the-id").await;
    let spool = dir.path().join("spool");
    let mut child = partner_agent(&["run", "--config", config.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    child.kill().await.unwrap();
    let out = child.wait_with_output().await.unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    let stats = hub.stats();
    assert!(hub.findings().is_empty());
    assert!(stats.assume_role_denied >= 1, "{stats:?}");
    assert!(stats.assume_role_denied <= 6, "paused between attempts (1 s here, 60 s by default): {stats:?}");
    assert!(log.contains("Security Hub refused access") && log.contains("AccessDenied"), "{log}");
    assert!(!log.contains("not-the-id"), "the external id is never logged");
    assert!(spool.join("trivy.json").exists(), "the backlog is kept");
}
