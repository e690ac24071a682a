//! Checks an AWS Signature Version 4 `Authorization` header against the request as received,
//! written from the specification and independent of the SDK's signer, so a request whose body
//! was changed after signing fails here.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Test credentials the stand-in accepts.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// Access key id.
    pub access_key: String,
    /// Secret access key.
    pub secret_key: String,
}

/// Why a signature is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum SigError {
    /// No `Authorization` header, or not SigV4.
    Missing,
    /// The header is not in the expected form.
    Malformed(&'static str),
    /// Signed with another access key.
    UnknownKey(String),
    /// The signature does not match the request.
    Mismatch,
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key size");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Verifies the request. `headers` are (lower-case name, value) pairs as received.
pub fn verify(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(String, String)],
    body: &[u8],
    creds: Option<&Credentials>,
) -> Result<(), SigError> {
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let auth = header("authorization").ok_or(SigError::Missing)?;
    let rest = auth.strip_prefix("AWS4-HMAC-SHA256 ").ok_or(SigError::Missing)?;
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=').ok_or(SigError::Malformed("Authorization"))?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    let (credential, signed, signature) = match (credential, signed, signature) {
        (Some(c), Some(s), Some(g)) => (c, s, g),
        _ => {
            return Err(SigError::Malformed("Authorization needs Credential, SignedHeaders and Signature"));
        }
    };
    let Some(creds) = creds else { return Ok(()) };
    let mut scope = credential.splitn(2, '/');
    let key_id = scope.next().unwrap_or_default();
    let scope = scope.next().ok_or(SigError::Malformed("Credential"))?;
    if key_id != creds.access_key {
        return Err(SigError::UnknownKey(key_id.to_owned()));
    }
    let amz_date = header("x-amz-date").ok_or(SigError::Malformed("x-amz-date missing"))?;
    let mut canonical_headers = String::new();
    for name in signed.split(';') {
        let values: Vec<&str> = headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect();
        let value = values
            .iter()
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join(",");
        canonical_headers.push_str(&format!("{name}:{value}\n"));
    }
    let canonical_request = format!(
        "{method}\n{path}\n{query}\n{canonical_headers}\n{signed}\n{}",
        hex::encode(Sha256::digest(body))
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let parts: Vec<&str> = scope.split('/').collect();
    if parts.len() != 4 || parts[3] != "aws4_request" {
        return Err(SigError::Malformed("credential scope"));
    }
    let mut key = format!("AWS4{}", creds.secret_key).into_bytes();
    for p in &parts {
        key = hmac(&key, p.as_bytes());
    }
    let expected = hex::encode(hmac(&key, string_to_sign.as_bytes()));
    if expected == signature { Ok(()) } else { Err(SigError::Mismatch) }
}

/// Verifies against each of `creds` (by access key id); `Ok(Some(key))` names the key that
/// signed, `Ok(None)` means nothing was checked beyond the header's form (no credentials given).
pub fn verify_any(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(String, String)],
    body: &[u8],
    creds: &[Credentials],
) -> Result<Option<String>, SigError> {
    if creds.is_empty() {
        return verify(method, path, query, headers, body, None).map(|()| None);
    }
    let mut last = SigError::Missing;
    for c in creds {
        match verify(method, path, query, headers, body, Some(c)) {
            Ok(()) => return Ok(Some(c.access_key.clone())),
            Err(SigError::UnknownKey(k)) => last = SigError::UnknownKey(k),
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from AWS's SigV4 documentation (IAM ListUsers, GET).
    #[test]
    fn verifies_aws_documentation_example() {
        let headers = vec![
            ("authorization".to_owned(), "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7".to_owned()),
            ("content-type".to_owned(), "application/x-www-form-urlencoded; charset=utf-8".to_owned()),
            ("host".to_owned(), "iam.amazonaws.com".to_owned()),
            ("x-amz-date".to_owned(), "20150830T123600Z".to_owned()),
        ];
        let creds = Credentials {
            access_key: "AKIDEXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        };
        let query = "Action=ListUsers&Version=2010-05-08";
        assert_eq!(verify("GET", "/", query, &headers, b"", Some(&creds)), Ok(()));
        assert_eq!(verify("GET", "/", query, &headers, b"x", Some(&creds)), Err(SigError::Mismatch));
        let wrong = Credentials { secret_key: "other".into(), ..creds.clone() };
        assert_eq!(verify("GET", "/", query, &headers, b"", Some(&wrong)), Err(SigError::Mismatch));
        assert_eq!(verify("GET", "/", query, &headers[1..], b"", Some(&creds)), Err(SigError::Missing));
    }
}
