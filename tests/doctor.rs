//! `doctor` against hubsim (Security Hub and STS on loopback, SigV4 checked): each failure it
//! knows is made to happen for real and must come out as FAIL with its fix and a non-zero exit.
//! `iam-policy` prints the documents of each integration model.

mod common;

use common::{ACCESS_KEY, ACCOUNT, Env, SECRET_KEY};
use hubsim::{Credentials, Hub, Options};
use serde_json::Value;

const ACME: &str = "arn:aws:securityhub:eu-west-1:999988887777:product/acme/scanner";
const ACME_SUBSCRIPTION: &str =
    "arn:aws:securityhub:eu-west-1:111122223333:product-subscription/acme/scanner";

fn hub_options() -> Options {
    Options {
        credentials: vec![Credentials { access_key: ACCESS_KEY.into(), secret_key: SECRET_KEY.into() }],
        ..Options::default()
    }
}

/// Runs `doctor` with `extra` config merged in; (success, stdout).
async fn doctor(env: &Env, extra: &str) -> (bool, String) {
    let out = env.agent(&["doctor", "--config", env.config(extra).to_str().unwrap()]).output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn line<'a>(text: &'a str, check: &str) -> &'a str {
    text.lines()
        .find(|l| l.contains(&format!(" {check} ")))
        .unwrap_or_else(|| panic!("no {check} line: {text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_working_customer_destination_passes_every_check() {
    let env = Env::with_options(hub_options()).await;
    let (ok, text) = doctor(&env, "").await;
    assert!(ok, "{text}");
    assert!(line(&text, "credentials").contains("PASS") && text.contains("from Environment"), "{text}");
    assert!(line(&text, "identity").contains(&format!("PASS  identity      account {ACCOUNT}")), "{text}");
    assert!(line(&text, "hub").contains("PASS") && text.contains("hub/default"), "{text}");
    assert!(line(&text, "integration").contains("default product"), "{text}");
    assert!(line(&text, "import").contains("PASS"), "{text}");
    assert!(text.contains("all checks passed"));
    assert_eq!(env.hub.stats().accepted, 0, "the probe imports nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn security_hub_not_enabled_names_the_region_to_enable() {
    let env = Env::with_options(Options { hub_disabled: true, ..hub_options() }).await;
    let (ok, text) = doctor(&env, "").await;
    assert!(!ok);
    let l = line(&text, "hub");
    assert!(l.contains("FAIL") && l.contains("not enabled for this account in eu-west-1"), "{text}");
    assert!(text.contains("fix: enable Security Hub CSPM in eu-west-1"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_import_permission_points_to_iam_policy() {
    let env =
        Env::with_options(Options { denied: vec!["BatchImportFindings".into()], ..hub_options() }).await;
    let (ok, text) = doctor(&env, "").await;
    assert!(!ok);
    assert!(
        line(&text, "import").contains("not authorized to call securityhub:BatchImportFindings"),
        "{text}"
    );
    assert!(text.contains("securityhub-agent iam-policy"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partner_product_must_be_enabled_in_the_account() {
    let env = Env::with_options(hub_options()).await;
    let extra = format!("[destination]\nproduct_arn = \"{ACME}\"\n");
    let (ok, text) = doctor(&env, &extra).await;
    assert!(!ok);
    assert!(line(&text, "integration").contains(&format!("the integration {ACME} is not enabled")), "{text}");
    assert!(
        text.contains(&format!("enable-import-findings-for-product --region eu-west-1 --product-arn {ACME}"))
    );

    let enabled =
        Env::with_options(Options { product_subscriptions: vec![ACME_SUBSCRIPTION.into()], ..hub_options() })
            .await;
    let (ok, text) = doctor(&enabled, &extra).await;
    assert!(ok, "{text}");
    assert!(line(&text, "integration").contains(&format!("{ACME_SUBSCRIPTION} is enabled")), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_of_another_account_fail_the_identity_check() {
    let env = Env::with_options(Options { account: Some("444455556666".into()), ..hub_options() }).await;
    let (ok, text) = doctor(&env, "").await;
    assert!(!ok);
    let l = line(&text, "identity");
    assert!(
        l.contains(&format!("the credentials are for account 444455556666, the destination is {ACCOUNT}")),
        "{l}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_partner_account_model_is_recognised_and_customer_side_checks_skipped() {
    let env = Env::with_options(Options { account: Some("999988887777".into()), ..hub_options() }).await;
    let (ok, text) = doctor(&env, &format!("[destination]\nproduct_arn = \"{ACME}\"\n")).await;
    assert!(ok, "{text}");
    assert!(
        line(&text, "identity")
            .contains("partner account 999988887777, sending findings for customer account")
    );
    assert!(line(&text, "hub").contains("SKIP"), "{text}");
    assert!(line(&text, "integration").contains("SKIP"), "{text}");
    assert!(line(&text, "import").contains("PASS"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_external_id_fails_at_credentials_with_the_trust_policy_fix() {
    let role = hubsim::sts::Role {
        arn: format!("arn:aws:iam::{ACCOUNT}:role/partner-import"),
        external_id: Some("the-right-one".into()),
        credentials: Credentials { access_key: "ASIAROLE".into(), secret_key: "role-secret".into() },
    };
    let env = Env::with_options(Options { roles: vec![role], ..hub_options() }).await;
    let extra = format!(
        "[destination]\nrole_arn = \"arn:aws:iam::{ACCOUNT}:role/partner-import\"\nexternal_id = \"a-wrong-one\"\n"
    );
    let (ok, text) = doctor(&env, &extra).await;
    assert!(!ok);
    let l = line(&text, "credentials");
    assert!(l.contains("FAIL") && l.contains("AccessDenied"), "{text}");
    assert!(text.contains("with the configured sts:ExternalId"), "{text}");
    assert!(!text.contains("a-wrong-one"), "the external id is never printed");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_endpoint_is_a_failure_not_a_hang() {
    let env = Env::with_options(hub_options()).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (ok, text) =
        doctor(&env, &format!("[destination]\nendpoint_url = \"http://127.0.0.1:{port}\"\n")).await;
    assert!(!ok);
    assert!(line(&text, "identity").contains("FAIL"), "{text}");
    assert!(text.contains("network path"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_destination_is_checked() {
    let env = Env::with_options(hub_options()).await;
    let other = Hub::start(Options { hub_disabled: true, ..hub_options() }).await.unwrap();
    let config = format!(
        "{}{}",
        Env::destination(ACCOUNT, "eu-west-1", &env.hub.endpoint()),
        Env::destination(ACCOUNT, "us-east-1", &other.endpoint())
    );
    let (ok, text) = doctor(&env, &config).await;
    assert!(!ok);
    assert!(text.contains(&format!("destination {ACCOUNT}/eu-west-1")), "{text}");
    assert!(text.contains("not enabled for this account in us-east-1"), "{text}");
    assert!(text.contains("1 of 2 destinations have a failing check"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn run_logs_the_checks_at_start_and_delivers_anyway() {
    use tokio::io::AsyncBufReadExt;
    // The credentials may import but not describe the hub: the check fails, delivery goes on.
    let env = Env::with_options(Options { denied: vec!["DescribeHub".into()], ..hub_options() }).await;
    env.drop_file("one.ndjson", &common::ndjson(&common::findings("pre", 3)));
    let mut daemon = env
        .agent(&["run", "--config", env.config("").to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(daemon.stderr.take().unwrap()).lines();
    let wanted = async {
        while let Some(l) = lines.next_line().await.unwrap() {
            if l.contains("preflight failed") {
                return l;
            }
        }
        panic!("the log ended without the preflight line");
    };
    let l = tokio::time::timeout(std::time::Duration::from_secs(30), wanted).await.expect("logged in time");
    assert!(
        l.contains("not authorized to call securityhub:DescribeHub") && l.contains("findings are kept"),
        "{l}"
    );
    assert_eq!(env.hub.wait_for(3, std::time::Duration::from_secs(30)).await, 3, "delivered anyway");
    daemon.kill().await.unwrap();
}

async fn iam_policy(env: &Env, extra: &str, args: &[&str]) -> Value {
    let config = env.config(extra);
    let mut all = vec!["iam-policy", "--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = env.agent(&all).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn iam_policy_prints_the_documents_of_each_model() {
    let env = Env::new().await;
    let customer = iam_policy(&env, "", &[]).await;
    assert_eq!(
        customer["permission"]["Statement"][0]["Resource"][0],
        format!("arn:aws:securityhub:eu-west-1:{ACCOUNT}:product/{ACCOUNT}/default")
    );
    let role = format!(
        "[destination]\nrole_arn = \"arn:aws:iam::{ACCOUNT}:role/acme\"\nexternal_id = \"x-secret\"\nproduct_arn = \"{ACME}\"\n"
    );
    let partner = iam_policy(&env, &role, &["--partner-principal", "arn:aws:iam::999988887777:root"]).await;
    assert_eq!(partner["permission"]["Statement"][0]["Resource"][0], ACME_SUBSCRIPTION);
    assert_eq!(partner["trust"]["Statement"][0]["Principal"]["AWS"], "arn:aws:iam::999988887777:root");
    assert!(!partner.to_string().contains("x-secret"));
    let own = format!("[destination]\nproduct_arn = \"{ACME}\"\n");
    let partner_account = iam_policy(&env, &own, &["--model", "partner-account"]).await;
    assert_eq!(partner_account["permission"]["Statement"][0]["Resource"][0], ACME);
}
