//! Preflight (`securityhub-agent doctor`): for each destination, the checks that decide whether its findings
//! can arrive, in order, each with the fix when it fails. `run` logs the same checks at start
//! (all but the import probe) without waiting for them.
//!
//! The calls are the SDK's, with the destination's own credentials and endpoint. Deciding what a
//! response means ([`verdict`], [`subscription_arn`], [`Model`]) is pure and tested apart.

use std::fmt::Write as _;
use std::time::Duration;

use aws_credential_types::provider::ProvideCredentials;
use aws_sdk_securityhub::config::http::HttpResponse;
use aws_sdk_securityhub::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_types::body::SdkBody;

use crate::config::DestinationConfig;
use crate::hub::client::{ClientError, sdk_config};

/// The three integration models of AWS's partner guide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Model {
    /// Customer-hosted: the customer's own credentials (the instance role) and account.
    Customer,
    /// Partner-hosted, sent from the customer account: an assumed role in the customer account.
    PartnerCustomerAccount,
    /// Partner-hosted, sent from the partner account: the partner's credentials and product,
    /// findings for the customer's account.
    PartnerAccount,
}

impl Model {
    /// The model a destination's configuration implies, knowing the account its credentials
    /// belong to when a check found out.
    pub fn of(d: &DestinationConfig, caller_account: Option<&str>) -> Model {
        if d.role_arn.is_some() {
            return Model::PartnerCustomerAccount;
        }
        let partner_product = d.product_arn.as_deref().is_some_and(|p| !is_default_product(p));
        match (caller_account, d.account_id.as_deref()) {
            (Some(caller), Some(account)) if caller != account && partner_product => Model::PartnerAccount,
            _ => Model::Customer,
        }
    }
}

/// How one check came out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It holds; what was found.
    Pass(String),
    /// It does not; what is wrong and what to do.
    Fail {
        /// What was found.
        problem: String,
        /// What to do about it.
        fix: String,
    },
    /// Not applicable, or not checkable from here; why.
    Skip(String),
}

/// One named check.
#[derive(Debug, Clone)]
pub struct Check {
    /// Short name: `credentials`, `identity`, `security hub`, `integration`, `import`.
    pub name: &'static str,
    /// What came out.
    pub outcome: Outcome,
}

/// Every check of one destination.
#[derive(Debug, Clone)]
pub struct Report {
    /// `ACCOUNT/REGION`.
    pub destination: String,
    /// In the order they ran.
    pub checks: Vec<Check>,
}

impl Report {
    /// No check failed.
    pub fn ok(&self) -> bool {
        !self.checks.iter().any(|c| matches!(c.outcome, Outcome::Fail { .. }))
    }
}

/// The text `doctor` prints.
pub fn render(reports: &[Report]) -> String {
    let mut out = String::new();
    for r in reports {
        let _ = writeln!(out, "destination {}", r.destination);
        for c in &r.checks {
            let _ = match &c.outcome {
                Outcome::Pass(what) => writeln!(out, "  PASS  {:<13} {what}", c.name),
                Outcome::Skip(why) => writeln!(out, "  SKIP  {:<13} {why}", c.name),
                Outcome::Fail { problem, fix } => {
                    writeln!(out, "  FAIL  {:<13} {problem}\n        {:<13} fix: {fix}", c.name, "")
                }
            };
        }
    }
    let failed = reports.iter().filter(|r| !r.ok()).count();
    let _ = match failed {
        0 => writeln!(out, "all checks passed"),
        n => writeln!(out, "{n} of {} destinations have a failing check", reports.len()),
    };
    out
}

/// `…:product/ACCOUNT/default`: the account's own product, which needs no integration.
pub fn is_default_product(product_arn: &str) -> bool {
    product_arn.ends_with("/default")
}

/// The subscription a customer account holds for a partner product:
/// `arn:aws:securityhub:REGION:ACCOUNT:product-subscription/COMPANY/PRODUCT`.
pub fn subscription_arn(product_arn: &str, account: &str) -> Option<String> {
    let mut parts = product_arn.splitn(6, ':');
    let (arn, partition, service, region, _owner, resource) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let path = resource.strip_prefix("product/")?;
    Some(format!("{arn}:{partition}:{service}:{region}:{account}:product-subscription/{path}"))
}

/// What an error response from Security Hub means for a check: the problem and the fix.
/// `status` is `None` when no response arrived.
pub fn verdict(
    action: &str,
    region: &str,
    status: Option<u16>,
    code: Option<&str>,
    message: &str,
) -> (String, String) {
    match (status, code) {
        (None, _) => (
            format!("no response from Security Hub: {message}"),
            "check the network path to the endpoint (security groups, VPC endpoint, proxy) and endpoint_url"
                .into(),
        ),
        (_, Some("InvalidAccessException")) => (
            format!("Security Hub is not enabled for this account in {region}"),
            format!(
                "enable Security Hub CSPM in {region}: aws securityhub enable-security-hub --region {region}"
            ),
        ),
        (_, Some("AccessDeniedException" | "AccessDenied" | "UnauthorizedOperation")) | (Some(403), _) => (
            format!("not authorized to call securityhub:{action}: {message}"),
            format!(
                "allow securityhub:{action} for these credentials (securityhub-agent iam-policy prints the policy)"
            ),
        ),
        _ => (format!("{action} failed: {message}"), "see the message; run again with RUST_LOG=debug".into()),
    }
}

/// An error and its sources, each said once: `a: b: c`.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// HTTP status (when a response arrived), error code and message of an SDK error.
fn error_parts<E: ProvideErrorMetadata + std::error::Error + 'static>(
    err: &SdkError<E, HttpResponse>,
) -> (Option<u16>, Option<String>, String) {
    let status = err.raw_response().map(|r| r.status().as_u16());
    let message = match err.message() {
        Some(m) => m.to_owned(),
        None => chain(err),
    };
    (status, err.code().map(str::to_owned), message)
}

/// The provider that gave the credentials, as the SDK names it (`Environment`, `IMDSv2`,
/// `ProfileFile`, `AssumeRoleProvider`, ...). The SDK has no accessor; its `Debug` output names
/// it (and redacts the secret).
fn provider_name(creds: &aws_credential_types::Credentials) -> String {
    let debug = format!("{creds:?}");
    debug
        .split("provider_name: \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or("the SDK's chain")
        .to_owned()
}

/// Where the credentials were expected to come from, for the fix text.
fn credential_hint(d: &DestinationConfig) -> String {
    if let Some(role) = &d.role_arn {
        return format!(
            "the agent's own credentials must be allowed sts:AssumeRole on {role}, and the role's trust \
             policy must name this principal{}",
            if d.external_id.is_some() { " with the configured sts:ExternalId" } else { "" }
        );
    }
    if let Some(profile) = &d.profile {
        return format!("check profile {profile:?} in ~/.aws/config and ~/.aws/credentials");
    }
    "on EC2 attach an instance profile (IAM role) and allow IMDSv2 (hop limit 2 in containers); \
     elsewhere set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
        .into()
}

/// What to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Every check (`doctor`), including an empty `BatchImportFindings` request.
    Full,
    /// At the daemon's start: no direct credentials call (the first call through the client's
    /// credentials cache shows the same) and no import probe (the first real request proves it
    /// soon enough, and a probe would spend quota).
    Startup,
}

/// Check 1: the credentials resolve, and from which provider. False when they do not.
async fn check_credentials(
    sdk: &aws_config::SdkConfig,
    d: &DestinationConfig,
    push: &mut impl FnMut(&'static str, Outcome),
) -> bool {
    let provider = sdk.credentials_provider();
    let creds = match provider {
        Some(p) => p.provide_credentials().await,
        None => {
            push(
                "credentials",
                Outcome::Fail { problem: "no credentials provider".into(), fix: credential_hint(d) },
            );
            return false;
        }
    };
    match creds {
        Ok(c) => {
            let expiry = c
                .expiry()
                .and_then(|e| e.duration_since(std::time::SystemTime::now()).ok())
                .map(|left| {
                    format!(", valid for {}", humantime::format_duration(Duration::from_secs(left.as_secs())))
                })
                .unwrap_or_default();
            push("credentials", Outcome::Pass(format!("from {}{expiry}", provider_name(&c))));
        }
        Err(e) => {
            let text = chain(&e);
            push(
                "credentials",
                Outcome::Fail {
                    problem: format!("could not get credentials: {text}"),
                    fix: credential_hint(d),
                },
            );
            return false;
        }
    }

    true
}

/// Runs the checks for one (resolved) destination with its own SDK configuration.
pub async fn check(d: &DestinationConfig, request_timeout: Duration, depth: Depth) -> Report {
    match sdk_config(d, request_timeout).await {
        Ok(sdk) => check_with(&sdk, d, depth).await,
        Err(ClientError::NoRegion) => Report {
            destination: crate::pipeline::lane_name(d),
            checks: vec![Check {
                name: "credentials",
                outcome: Outcome::Fail {
                    problem: ClientError::NoRegion.to_string(),
                    fix: "set region in [destination]".into(),
                },
            }],
        },
    }
}

/// Runs the checks for one (resolved) destination through `sdk`, whose credentials cache the
/// daemon's client shares.
pub async fn check_with(sdk: &aws_config::SdkConfig, d: &DestinationConfig, depth: Depth) -> Report {
    let mut report = Report { destination: crate::pipeline::lane_name(d), checks: Vec::new() };
    let mut push = |name, outcome| report.checks.push(Check { name, outcome });
    let region = sdk.region().map(ToString::to_string).or_else(|| d.region.clone()).unwrap_or_default();

    // 1. Credentials resolve.
    if depth == Depth::Full && !check_credentials(sdk, d, &mut push).await {
        return report;
    }

    // 2. Whose credentials they are.
    let sts = aws_sdk_sts::Client::new(sdk);

    let caller = match sts.get_caller_identity().send().await {
        Ok(out) => out.account().map(str::to_owned),
        Err(e) => {
            let (status, _, message) = error_parts(&e);
            let fix = match status {
                Some(_) => "check that the credentials are current and STS is reachable".into(),
                None => format!("{}; and check the network path to STS", credential_hint(d)),
            };
            push(
                "identity",
                Outcome::Fail { problem: format!("sts:GetCallerIdentity failed: {message}"), fix },
            );
            return report;
        }
    };
    let model = Model::of(d, caller.as_deref());
    let caller = caller.unwrap_or_default();
    let account = d.account_id.clone().unwrap_or_else(|| caller.clone());
    match (model, d.account_id.as_deref()) {
        (Model::PartnerAccount, Some(customer)) => push(
            "identity",
            Outcome::Pass(format!(
                "partner account {caller}, sending findings for customer account {customer} (partner-account model)"
            )),
        ),
        (_, Some(want)) if want != caller => {
            let fix = match model {
                Model::PartnerCustomerAccount => {
                    format!("role_arn must be a role in account {want}, the account findings go to")
                }
                _ => format!(
                    "with the account's own product, BatchImportFindings must be called from the findings' account: \
                     use credentials of {want}, set role_arn to a role in {want}, or set product_arn to your \
                     partner product"
                ),
            };
            push(
                "identity",
                Outcome::Fail {
                    problem: format!("the credentials are for account {caller}, the destination is {want}"),
                    fix,
                },
            );
        }
        _ => push("identity", Outcome::Pass(format!("account {caller}"))),
    }

    let hub = aws_sdk_securityhub::Client::new(sdk);
    // 3. Security Hub is enabled in the account findings go to.
    if model == Model::PartnerAccount {
        push(
            "security hub",
            Outcome::Skip("the customer's account cannot be checked from the partner account".into()),
        );
    } else {
        match hub.describe_hub().send().await {
            Ok(out) => {
                push("security hub", Outcome::Pass(format!("enabled ({})", out.hub_arn().unwrap_or("hub"))))
            }
            Err(e) => {
                let (status, code, message) = error_parts(&e);
                let (problem, fix) = verdict("DescribeHub", &region, status, code.as_deref(), &message);
                push("security hub", Outcome::Fail { problem, fix });
            }
        }
    }

    // 4. The product integration is enabled.
    let product = d.product_arn.clone().unwrap_or_else(|| {
        crate::finding::Route { region: region.clone(), account_id: None, product_arn: None }
            .product_arn_for(&account)
    });
    if is_default_product(&product) {
        push("integration", Outcome::Pass("the account's own default product: nothing to enable".into()));
    } else if model == Model::PartnerAccount {
        push(
            "integration",
            Outcome::Skip(format!(
                "the customer enables {product} in account {account}; it cannot be listed from the partner account"
            )),
        );
    } else {
        let want = subscription_arn(&product, &account).unwrap_or_default();
        match hub.list_enabled_products_for_import().send().await {
            Ok(out) if out.product_subscriptions().contains(&want) => {
                push("integration", Outcome::Pass(format!("{want} is enabled")))
            }
            Ok(_) => push(
                "integration",
                Outcome::Fail {
                    problem: format!("the integration {product} is not enabled in account {account}"),
                    fix: format!(
                        "aws securityhub enable-import-findings-for-product --region {region} --product-arn {product}"
                    ),
                },
            ),
            Err(e) => {
                let (status, code, message) = error_parts(&e);
                let (problem, fix) =
                    verdict("ListEnabledProductsForImport", &region, status, code.as_deref(), &message);
                push("integration", Outcome::Fail { problem, fix });
            }
        }
    }

    // 5. The credentials may import: an empty request, which imports nothing.
    if depth == Depth::Full {
        let result = hub
            .batch_import_findings()
            .set_findings(Some(vec![]))
            .customize()
            .mutate_request(|req| {
                *req.body_mut() = SdkBody::from(&b"{\"Findings\":[]}"[..]);
                req.headers_mut().insert("content-length", "15");
            })
            .send()
            .await;
        match result {
            Ok(_) => push(
                "import",
                Outcome::Pass("BatchImportFindings is allowed (probed with an empty request)".into()),
            ),
            Err(e) => {
                let (status, code, message) = error_parts(&e);
                match code.as_deref() {
                    // Refused for its content, so past authorisation.
                    Some("InvalidInputException") => push(
                        "import",
                        Outcome::Pass(
                            "BatchImportFindings is allowed (an empty request was refused as empty)".into(),
                        ),
                    ),
                    _ => {
                        let (problem, fix) =
                            verdict("BatchImportFindings", &region, status, code.as_deref(), &message);
                        push("import", Outcome::Fail { problem, fix });
                    }
                }
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(account: Option<&str>, product: Option<&str>, role: Option<&str>) -> DestinationConfig {
        DestinationConfig {
            account_id: account.map(Into::into),
            product_arn: product.map(Into::into),
            role_arn: role.map(Into::into),
            region: Some("eu-west-1".into()),
            ..Default::default()
        }
    }

    #[test]
    fn the_model_follows_from_role_product_and_caller() {
        let acme = "arn:aws:securityhub:eu-west-1:999988887777:product/acme/scanner";
        assert_eq!(Model::of(&dest(Some("111122223333"), None, None), Some("111122223333")), Model::Customer);
        assert_eq!(
            Model::of(&dest(Some("111122223333"), None, Some("arn:aws:iam::111122223333:role/r")), None),
            Model::PartnerCustomerAccount
        );
        assert_eq!(
            Model::of(&dest(Some("111122223333"), Some(acme), None), Some("999988887777")),
            Model::PartnerAccount
        );
        // A partner product used from inside the customer account is customer-hosted.
        assert_eq!(
            Model::of(&dest(Some("111122223333"), Some(acme), None), Some("111122223333")),
            Model::Customer
        );
        // Other credentials with the default product are not a model but a mistake: Customer, so
        // the identity check fails.
        assert_eq!(Model::of(&dest(Some("111122223333"), None, None), Some("444455556666")), Model::Customer);
    }

    #[test]
    fn subscription_arn_is_the_product_in_the_customer_account() {
        assert_eq!(
            subscription_arn(
                "arn:aws:securityhub:us-east-1:999988887777:product/acme/scanner",
                "111122223333"
            )
            .as_deref(),
            Some("arn:aws:securityhub:us-east-1:111122223333:product-subscription/acme/scanner")
        );
        assert_eq!(subscription_arn("not-an-arn", "111122223333"), None);
        assert!(is_default_product(
            "arn:aws:securityhub:eu-west-1:111122223333:product/111122223333/default"
        ));
    }

    #[test]
    fn verdicts_name_the_fix() {
        let (p, f) =
            verdict("DescribeHub", "eu-west-1", Some(401), Some("InvalidAccessException"), "not subscribed");
        assert!(
            p.contains("not enabled") && f.contains("enable Security Hub CSPM in eu-west-1"),
            "{p} / {f}"
        );
        let (p, f) =
            verdict("BatchImportFindings", "eu-west-1", Some(403), Some("AccessDeniedException"), "nope");
        assert!(p.contains("securityhub:BatchImportFindings") && f.contains("iam-policy"), "{p} / {f}");
        let (p, _) = verdict("DescribeHub", "eu-west-1", None, None, "connection refused");
        assert!(p.contains("no response"), "{p}");
    }

    #[test]
    fn render_shows_each_check_and_the_fix() {
        let report = Report {
            destination: "111122223333/eu-west-1".into(),
            checks: vec![
                Check { name: "credentials", outcome: Outcome::Pass("from IMDSv2".into()) },
                Check {
                    name: "security hub",
                    outcome: Outcome::Fail { problem: "not enabled".into(), fix: "enable it".into() },
                },
            ],
        };
        let text = render(&[report]);
        assert!(text.contains("PASS  credentials   from IMDSv2"), "{text}");
        assert!(
            text.contains("FAIL  security hub  not enabled") && text.contains("fix: enable it"),
            "{text}"
        );
        assert!(text.ends_with("1 of 1 destinations have a failing check\n"), "{text}");
    }
}
