//! The one call to Security Hub: `BatchImportFindings` through the AWS SDK, with the ready JSON
//! body put into the request before signing. Signing, credentials, endpoint resolution and the
//! typed response stay the SDK's; retries are the agent's (the SDK's own are turned off).

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_securityhub::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;

use super::retry::{Verdict, classify};
use crate::config::DestinationConfig;

/// Setting up the client failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No Region in config, environment or profile.
    #[error(
        "no AWS Region: set [destination].region in the config or AWS_REGION in the environment, \
         or run on EC2 with instance metadata (IMDSv2) reachable"
    )]
    NoRegion,
}

/// One finding Security Hub refused in an otherwise successful request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedFinding {
    /// Its Id.
    pub id: String,
    /// Security Hub's `ErrorCode`.
    pub code: String,
    /// Security Hub's `ErrorMessage`.
    pub message: String,
}

/// A request that failed as a whole.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct RequestFailure {
    /// What to do about it.
    pub verdict: Verdict,
    /// HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// Error code, when the response had one.
    pub code: Option<String>,
    /// Everything the SDK said, for the log.
    pub message: String,
    /// `Retry-After` in seconds, when the response had one.
    pub retry_after: Option<Duration>,
}

/// A Security Hub client for one destination.
#[derive(Debug, Clone)]
pub struct HubClient {
    client: aws_sdk_securityhub::Client,
    region: String,
}

impl HubClient {
    /// Builds the client from the SDK's default chains plus the destination's overrides.
    pub async fn connect(dest: &DestinationConfig, request_timeout: Duration) -> Result<Self, ClientError> {
        Self::from_sdk(&sdk_config(dest, request_timeout).await?)
    }

    /// A client on `sdk` (see [`sdk_config`]); clients on one `SdkConfig` share its credentials cache.
    pub fn from_sdk(sdk: &aws_config::SdkConfig) -> Result<Self, ClientError> {
        let region = sdk.region().ok_or(ClientError::NoRegion)?.to_string();
        Ok(Self { client: aws_sdk_securityhub::Client::new(sdk), region })
    }

    /// The Region requests go to.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The SDK client, for the preflight calls of `doctor`.
    pub fn sdk(&self) -> &aws_sdk_securityhub::Client {
        &self.client
    }
}

/// The SDK configuration of one destination: the default chains, the destination's Region,
/// endpoint and profile, the SDK's retries off, and — with `role_arn` — AssumeRole credentials.
pub async fn sdk_config(
    dest: &DestinationConfig,
    request_timeout: Duration,
) -> Result<aws_config::SdkConfig, ClientError> {
    let timeouts = TimeoutConfig::builder()
        .operation_attempt_timeout(request_timeout)
        .connect_timeout(request_timeout.min(Duration::from_secs(10)))
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::disabled())
        .timeout_config(timeouts);
    if let Some(region) = &dest.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(url) = &dest.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some(profile) = &dest.profile {
        loader = loader.profile_name(profile);
    }
    let mut sdk = loader.load().await;
    if sdk.region().is_none() {
        return Err(ClientError::NoRegion);
    }
    if let Some(role) = &dest.role_arn {
        // Partner-hosted, sent from the customer account: the SDK's AssumeRoleProvider, whose
        // credentials the client's identity cache refreshes before they expire.
        let mut provider = aws_config::sts::AssumeRoleProvider::builder(role)
            .session_name(dest.session_name.clone().unwrap_or_else(|| "securityhub-agent".into()))
            .configure(&sdk);
        if let Some(id) = &dest.external_id {
            provider = provider.external_id(id.0.clone());
        }
        let provider = provider.build().await;
        sdk = sdk
            .into_builder()
            .credentials_provider(aws_sdk_securityhub::config::SharedCredentialsProvider::new(provider))
            .build();
    }
    Ok(sdk)
}

impl HubClient {
    /// Sends one ready `{"Findings":[...]}` body. `Ok` lists the findings refused one by one.
    pub async fn import(&self, body: Bytes) -> Result<Vec<FailedFinding>, RequestFailure> {
        let len = body.len().to_string();
        let result = self
            .client
            .batch_import_findings()
            .set_findings(Some(vec![]))
            .customize()
            .mutate_request(move |req| {
                // Runs before signing, so the signature covers this body.
                *req.body_mut() = SdkBody::from(body.clone());
                req.headers_mut().insert("content-length", len.clone());
            })
            .send()
            .await;
        match result {
            Ok(out) => Ok(out
                .failed_findings()
                .iter()
                .map(|f| FailedFinding {
                    id: f.id().unwrap_or_default().to_owned(),
                    code: f.error_code().unwrap_or("Unknown").to_owned(),
                    message: f.error_message().unwrap_or_default().to_owned(),
                })
                .collect()),
            Err(err) => {
                let status = err.raw_response().map(|r| r.status().as_u16());
                let retry_after = err
                    .raw_response()
                    .and_then(|r| r.headers().get("retry-after"))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let code = err.code().map(str::to_owned);
                let message = DisplayErrorContext(&err).to_string();
                // No response: credentials could not be had. An STS refusal (wrong role or external
                // id) is an access problem, paused on like Security Hub's own; anything else is retried.
                let verdict = if status.is_none() && message.contains("AccessDenied") {
                    Verdict::AccessDenied
                } else {
                    classify(status, code.as_deref())
                };
                Err(RequestFailure { verdict, status, code, message, retry_after })
            }
        }
    }
}
