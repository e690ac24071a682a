//! Who and where this agent is: Region, account and instance id from the EC2 instance identity
//! document (IMDSv2, through the AWS SDK's IMDS client), unless the configuration says so.
//! Credentials are not fetched here: the SDK's default chain finds the instance profile itself.

use std::time::Duration;

use serde::Deserialize;

/// The instance identity document's fields the agent uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceIdentity {
    /// The instance's Region.
    pub region: String,
    /// The account the instance runs in.
    pub account_id: String,
    /// `i-…`.
    pub instance_id: String,
}

/// Instance metadata could not be read.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// `AWS_EC2_METADATA_DISABLED=true`.
    #[error("instance metadata is disabled (AWS_EC2_METADATA_DISABLED)")]
    Disabled,
    /// No answer, an error, or a document that does not parse.
    #[error(
        "the instance metadata service did not give the identity document within {timeout:?} ({reason}); \
         not on EC2, or IMDSv2's hop limit is too low for this host (containers need 2)"
    )]
    Unavailable {
        /// The time allowed.
        timeout: Duration,
        /// What went wrong.
        reason: String,
    },
}

/// Whether the environment turned instance metadata off, as the SDK reads it.
pub fn imds_disabled() -> bool {
    std::env::var("AWS_EC2_METADATA_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Reads the identity document with IMDSv2; one clear error instead of a hang.
pub async fn instance_identity(timeout: Duration) -> Result<InstanceIdentity, IdentityError> {
    if imds_disabled() {
        return Err(IdentityError::Disabled);
    }
    let client = aws_config::imds::Client::builder()
        .max_attempts(2)
        .connect_timeout(timeout / 2)
        .read_timeout(timeout / 2)
        .operation_timeout(timeout)
        .build();
    let unavailable = |reason: String| IdentityError::Unavailable { timeout, reason };
    let doc = tokio::time::timeout(timeout, client.get("/latest/dynamic/instance-identity/document"))
        .await
        .map_err(|_| unavailable("timed out".into()))?
        .map_err(|e| unavailable(aws_sdk_securityhub::error::DisplayErrorContext(&e).to_string()))?;
    serde_json::from_str(doc.as_ref()).map_err(|e| unavailable(format!("unreadable identity document: {e}")))
}
