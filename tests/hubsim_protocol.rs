//! hubsim speaks Security Hub's wire protocol: the real SDK's typed calls work against it, and
//! it enforces what Security Hub enforces.

mod common;

use aws_sdk_securityhub::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_securityhub::types::{AwsSecurityFindingFilters, StringFilter, StringFilterComparison};
use common::*;
use hubsim::{Hub, Options};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn client(hub: &Hub, secret: &str) -> aws_sdk_securityhub::Client {
    let config = aws_sdk_securityhub::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .endpoint_url(hub.endpoint())
        .credentials_provider(Credentials::new(ACCESS_KEY, secret, None, None, "test"))
        .build();
    aws_sdk_securityhub::Client::from_conf(config)
}

/// Posts `body` to /findings/import over a raw socket, with `authorization` if given.
async fn raw_post(hub: &Hub, authorization: Option<&str>, body: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(hub.addr()).await.unwrap();
    let auth = authorization.map(|a| format!("authorization: {a}\r\n")).unwrap_or_default();
    let req = format!(
        "POST /findings/import HTTP/1.1\r\nhost: {}\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        hub.addr(),
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// A well-formed SigV4 header; hubsim without credentials checks only its form.
const ANY_SIGNATURE: &str = "AWS4-HMAC-SHA256 Credential=A/20260101/eu-west-1/securityhub/aws4_request, SignedHeaders=host, Signature=00";

#[tokio::test(flavor = "multi_thread")]
async fn sdk_get_findings_pages_through_what_was_imported() {
    let env = Env::new().await;
    env.drop_file("a.json", json!(findings("g", 150)).to_string().as_bytes());
    let (ok, log) = env.run_once(&env.config("")).await;
    assert!(ok, "{log}");
    let sh = client(&env.hub, SECRET_KEY);
    let mut ids = Vec::new();
    let mut pages = sh.get_findings().max_results(100).into_paginator().send();
    while let Some(page) = pages.next().await {
        ids.extend(page.unwrap().findings().iter().map(|f| f.id().unwrap_or_default().to_owned()));
    }
    assert_eq!(ids.len(), 150);
    let filter = AwsSecurityFindingFilters::builder()
        .id(StringFilter::builder().value("g-7").comparison(StringFilterComparison::Equals).build())
        .build();
    let one = sh.get_findings().filters(filter).send().await.unwrap();
    assert_eq!(one.findings().len(), 1);
    let f = &one.findings()[0];
    assert_eq!((f.title(), f.aws_account_id()), (Some("Finding g-7"), Some(ACCOUNT)));
}

#[tokio::test(flavor = "multi_thread")]
async fn unsigned_and_wrongly_signed_requests_are_refused() {
    let hub = Hub::start(Options {
        credentials: vec![hubsim::Credentials {
            access_key: ACCESS_KEY.into(),
            secret_key: SECRET_KEY.into(),
        }],
        ..Options::default()
    })
    .await
    .unwrap();
    let reply = raw_post(&hub, None, &json!({"Findings": []}).to_string()).await;
    assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");
    assert!(reply.contains("MissingAuthenticationTokenException"), "{reply}");
    let err = client(&hub, "wrong").get_findings().send().await.unwrap_err();
    assert_eq!(
        aws_sdk_securityhub::error::ProvideErrorMetadata::code(&err),
        Some("InvalidSignatureException")
    );
    assert_eq!(hub.stats().bad_signatures, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_are_enforced_like_security_hub() {
    let hub = Hub::start(Options::default()).await.unwrap();
    let hub_ref = &hub;
    let signed_post = |body: String| async move { raw_post(hub_ref, Some(ANY_SIGNATURE), &body).await };
    let mut base = finding("x");
    base["AwsAccountId"] = json!(ACCOUNT);
    base["ProductArn"] = json!("arn:aws:securityhub:eu-west-1:111122223333:product/111122223333/default");
    let many: Vec<_> = (0..101)
        .map(|i| {
            let mut f = base.clone();
            f["Id"] = json!(i.to_string());
            f
        })
        .collect();
    let reply = signed_post(json!({"Findings": many}).to_string()).await;
    assert!(reply.starts_with("HTTP/1.1 400") && reply.contains("InvalidInputException"), "{reply}");
    let mut big = base.clone();
    big["ProductFields"] = json!({"x": "y".repeat(240_000)});
    let mut untitled = base.clone();
    untitled.as_object_mut().unwrap().remove("Title");
    untitled["Id"] = json!("untitled");
    let reply = signed_post(json!({"Findings": [base, big, untitled]}).to_string()).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let body: serde_json::Value = serde_json::from_str(reply.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!((body["SuccessCount"].as_u64(), body["FailedCount"].as_u64()), (Some(1), Some(2)), "{body}");
    assert!(body["FailedFindings"][1]["ErrorMessage"].as_str().unwrap().contains("Title"));
    let huge = json!({"Findings": [{"x": "y".repeat(6_000_000)}]}).to_string();
    assert!(signed_post(huge).await.starts_with("HTTP/1.1 413"));
}
