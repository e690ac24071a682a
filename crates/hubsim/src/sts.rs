//! A stand-in for STS `AssumeRole` (query protocol, XML), served on the same endpoint as the
//! Security Hub stand-in: the SDK sends STS calls to a configured `endpoint_url` too. Checks the
//! role ARN and the external id, and hands out the role's credentials.

use crate::Credentials;

/// A role that may be assumed.
#[derive(Debug, Clone)]
pub struct Role {
    /// `arn:aws:iam::ACCOUNT:role/NAME`.
    pub arn: String,
    /// The external id the trust policy requires, if any.
    pub external_id: Option<String>,
    /// What a successful `AssumeRole` returns.
    pub credentials: Credentials,
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = (b[i] == b'%' && i + 2 < b.len())
            .then(|| std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()))
            .flatten();
        match (b[i], hex) {
            (_, Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (other, None) => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The form fields of a query-protocol body.
pub fn form(body: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect()
}

/// Answers an `AssumeRole` call: `Ok(xml)` or `Err((status, xml))`.
pub fn assume_role(
    fields: &[(String, String)],
    roles: &[Role],
    now: std::time::SystemTime,
) -> Result<String, (u16, String)> {
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let arn = get("RoleArn").unwrap_or_default();
    let denied = |message: String| {
        (
            403,
            format!(
                "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>{message}</Message></Error><RequestId>hubsim</RequestId></ErrorResponse>"
            ),
        )
    };
    let Some(role) = roles.iter().find(|r| r.arn == arn) else {
        return Err(denied(format!("not authorized to perform: sts:AssumeRole on resource: {arn}")));
    };
    if role.external_id.as_deref().is_some_and(|want| get("ExternalId") != Some(want)) {
        return Err(denied(format!(
            "not authorized to perform: sts:AssumeRole on resource: {arn} (external id)"
        )));
    }
    let expiration = time::OffsetDateTime::from(now + std::time::Duration::from_secs(3600))
        .format(&time::format_description::well_known::Rfc3339)
        .expect("a formattable time");
    let session = get("RoleSessionName").unwrap_or("session");
    Ok(format!(
        "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleResult>\
<Credentials><AccessKeyId>{}</AccessKeyId><SecretAccessKey>{}</SecretAccessKey><SessionToken>hubsim-session</SessionToken><Expiration>{expiration}</Expiration></Credentials>\
<AssumedRoleUser><AssumedRoleId>AROAHUBSIM:{session}</AssumedRoleId><Arn>{arn}/{session}</Arn></AssumedRoleUser>\
</AssumeRoleResult><ResponseMetadata><RequestId>hubsim</RequestId></ResponseMetadata></AssumeRoleResponse>",
        role.credentials.access_key, role.credentials.secret_key
    ))
}

/// Whether a request body is a query-protocol call of `action`.
pub fn is_action(fields: &[(String, String)], action: &str) -> bool {
    fields.iter().any(|(k, v)| k == "Action" && v == action)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role() -> Role {
        Role {
            arn: "arn:aws:iam::111122223333:role/partner".into(),
            external_id: Some("ext-123".into()),
            credentials: Credentials { access_key: "ASIAROLE".into(), secret_key: "s".into() },
        }
    }

    #[test]
    fn form_bodies_decode() {
        let f = form(b"Action=AssumeRole&RoleArn=arn%3Aaws%3Aiam%3A%3A111122223333%3Arole%2Fpartner&ExternalId=ext-123");
        assert!(is_action(&f, "AssumeRole"));
        assert_eq!(f[1].1, "arn:aws:iam::111122223333:role/partner");
    }

    #[test]
    fn external_id_must_match() {
        let ok = form(b"Action=AssumeRole&RoleArn=arn%3Aaws%3Aiam%3A%3A111122223333%3Arole%2Fpartner&ExternalId=ext-123");
        assert!(assume_role(&ok, &[role()], std::time::SystemTime::now()).unwrap().contains("ASIAROLE"));
        let wrong = form(
            b"Action=AssumeRole&RoleArn=arn%3Aaws%3Aiam%3A%3A111122223333%3Arole%2Fpartner&ExternalId=nope",
        );
        let (status, xml) = assume_role(&wrong, &[role()], std::time::SystemTime::now()).unwrap_err();
        assert_eq!(status, 403);
        assert!(xml.contains("<Code>AccessDenied</Code>"));
    }
}
