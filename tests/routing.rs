//! Several destinations: each finding goes to the destination of its account (and Region), with
//! that destination's product ARN; a finding for an account no destination names is
//! dead-lettered with the reason, never sent.

mod common;

use common::{Env, findings, ndjson};
use hubsim::Hub;
use serde_json::Value;

const OTHER: &str = "444455556666";
const STRANGER: &str = "999999999999";
const PARTNER_PRODUCT: &str = "arn:aws:securityhub:us-east-1:777788889999:product/acme/scanner";

fn for_account(mut items: Vec<Value>, account: &str) -> Vec<Value> {
    for f in &mut items {
        f["AwsAccountId"] = account.into();
    }
    items
}

#[tokio::test(flavor = "multi_thread")]
async fn two_destinations_receive_only_their_own_findings_and_a_stranger_is_dead_lettered() {
    let env = Env::new().await;
    let other_hub = Hub::start(hubsim::Options {
        credentials: vec![hubsim::Credentials {
            access_key: common::ACCESS_KEY.into(),
            secret_key: common::SECRET_KEY.into(),
        }],
        ..Default::default()
    })
    .await
    .unwrap();
    let mut all = for_account(findings("mine", 150), common::ACCOUNT);
    all.extend(for_account(findings("theirs", 120), OTHER));
    all.extend(for_account(findings("stranger", 3), STRANGER));
    env.drop_file("mixed.ndjson", &ndjson(&all));
    let config = format!(
        "{}{}product_arn = \"{PARTNER_PRODUCT}\"\nrequests_per_second = 50.0\n",
        Env::destination(common::ACCOUNT, "eu-west-1", &env.hub.endpoint()),
        Env::destination(OTHER, "us-east-1", &other_hub.endpoint()),
    );
    let (ok, log) = env.run_once(&env.config(&config)).await;
    assert!(ok, "{log}");

    let mine = env.hub.findings();
    assert_eq!(mine.len(), 150);
    assert!(mine.iter().all(|f| f["AwsAccountId"] == common::ACCOUNT));
    assert_eq!(
        mine[0]["ProductArn"],
        format!("arn:aws:securityhub:eu-west-1:{0}:product/{0}/default", common::ACCOUNT)
    );
    let theirs = other_hub.findings();
    assert_eq!(theirs.len(), 120);
    assert!(theirs.iter().all(|f| f["AwsAccountId"] == OTHER && f["ProductArn"] == PARTNER_PRODUCT));

    let report = env.report("mixed.ndjson");
    let rejected = report["rejected"].as_array().expect("per-finding entries");
    assert_eq!(rejected.len(), 3, "{report:#}");
    for r in rejected {
        assert_eq!(r["ErrorCode"], "NoDestination", "{r}");
        assert!(r["ErrorMessage"].as_str().unwrap().contains(STRANGER), "{r}");
    }
    assert!(env.spool_files().is_empty(), "the file is settled: {:?}", env.spool_files());
    assert_eq!(env.hub.stats().bad_signatures + other_hub.stats().bad_signatures, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_single_destination_with_a_known_account_refuses_other_accounts() {
    let env = Env::new().await;
    let mut all = findings("ok", 2);
    all.extend(for_account(findings("foreign", 1), STRANGER));
    env.drop_file("two.ndjson", &ndjson(&all));
    let (ok, log) = env.run_once(&env.config("")).await;
    assert!(ok, "{log}");
    assert_eq!(env.hub.findings().len(), 2);
    let report = env.report("two.ndjson");
    assert_eq!(report["rejected"][0]["ErrorCode"], "NoDestination", "{report:#}");
    assert_eq!(report["rejected"][0]["Id"], "foreign-0");
}

#[tokio::test(flavor = "multi_thread")]
async fn partner_account_model_sends_customer_findings_with_the_partner_product_and_keys() {
    // The partner's own keys belong to the partner account (hubsim answers GetCallerIdentity
    // with it); findings are for two customer accounts, under the partner's product.
    let partner = "999988887777";
    let env =
        Env::with_options(hubsim::Options { account: Some(partner.into()), ..Default::default() }).await;
    let mut all = for_account(findings("cust-a", 4), common::ACCOUNT);
    all.extend(for_account(findings("cust-b", 5), OTHER));
    env.drop_file("partner.ndjson", &ndjson(&all));
    let hub = env.hub.endpoint();
    let config = format!(
        "{}product_arn = \"{PARTNER_PRODUCT}\"\n{}product_arn = \"{PARTNER_PRODUCT}\"\n",
        Env::destination(common::ACCOUNT, "us-east-1", &hub),
        Env::destination(OTHER, "us-east-1", &hub),
    );
    let path = env.config(&config);
    let (ok, log) = env.run_once(&path).await;
    assert!(ok, "{log}");
    let stored = env.hub.findings();
    assert_eq!(stored.len(), 9);
    assert!(stored.iter().all(|f| f["ProductArn"] == PARTNER_PRODUCT));
    assert_eq!(stored.iter().filter(|f| f["AwsAccountId"] == OTHER).count(), 5);
    assert_eq!(env.hub.stats().signed_by.get(common::ACCESS_KEY), Some(&2), "one request per destination");

    let out = env.agent(&["doctor", "--config", path.to_str().unwrap()]).output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(
        text.matches(&format!("partner account {partner}, sending findings for customer account")).count(),
        2
    );
}
