//! HTTP handling: routing, the protocol's error shapes, limits, quota, faults and recording.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::IgnoredAny;
use serde_json::{Value, json};

use crate::sigv4;
use crate::{MAX_BODY_BYTES, MAX_FINDING_BYTES, MAX_FINDINGS, RequestFault, State, Stored};

type Reply = Response<Full<Bytes>>;

/// The connection is closed without an answer (an injected fault).
#[derive(Debug)]
struct Dropped;
impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}
impl std::error::Error for Dropped {}

pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<State>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    // Stopping closes the open connections too, as a machine that goes away would.
    let (down, _) = tokio::sync::watch::channel(false);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
            _ = &mut stop => {
                let _ = down.send(true);
                return;
            }
        };
        let state = state.clone();
        let mut gone = down.subscribe();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(state.clone(), req));
            let connection =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                _ = gone.wait_for(|down| *down) => {}
            }
        });
    }
}

fn json_reply(status: StatusCode, body: &Value) -> Reply {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid response")
}

/// A restJson1 error: the code in `x-amzn-errortype` and in the body.
fn error_reply(status: u16, code: &str, message: &str) -> Reply {
    let mut r = json_reply(
        StatusCode::from_u16(status).expect("a valid status"),
        &json!({"__type": code, "Message": message}),
    );
    r.headers_mut().insert("x-amzn-errortype", code.parse().expect("a valid header value"));
    r
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Reply, Dropped> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Ok(error_reply(400, "SerializationException", "unreadable body"));
        }
    };
    let path = parts.uri.path().to_owned();
    match (parts.method.as_str(), path.as_str()) {
        ("GET", "/_hubsim/findings") => {
            let all: Vec<Value> = state.findings.lock().unwrap().values().map(Stored::value).collect();
            return Ok(json_reply(StatusCode::OK, &Value::Array(all)));
        }
        ("GET", "/_hubsim/arrivals") => {
            let all: serde_json::Map<String, Value> = state
                .findings
                .lock()
                .unwrap()
                .iter()
                .map(|((_, id), f)| (id.clone(), Value::from(f.first_seen_ns)))
                .collect();
            return Ok(json_reply(StatusCode::OK, &Value::Object(all)));
        }
        ("GET", "/_hubsim/stats") => {
            let stats = state.stats.lock().unwrap().clone();
            return Ok(json_reply(StatusCode::OK, &serde_json::to_value(stats).expect("stats serialize")));
        }
        _ => {}
    }
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let creds = state.options.lock().unwrap().credentials.clone();
    let query = parts.uri.query().unwrap_or("");
    let verified = sigv4::verify_any(parts.method.as_str(), &path, query, &headers, &body, &creds);
    if let (Ok(Some(key)), "/findings/import") = (&verified, path.as_str()) {
        *state.stats.lock().unwrap().signed_by.entry(key.clone()).or_default() += 1;
    }
    if let Err(e) = verified {
        state.stats.lock().unwrap().bad_signatures += 1;
        let (code, msg) = match e {
            sigv4::SigError::Missing => {
                ("MissingAuthenticationTokenException", "Missing Authentication Token".to_owned())
            }
            sigv4::SigError::UnknownKey(k) => (
                "UnrecognizedClientException",
                format!("The security token included in the request is invalid: {k}"),
            ),
            other => (
                "InvalidSignatureException",
                format!(
                    "The request signature we calculated does not match the signature you provided: {other:?}"
                ),
            ),
        };
        return Ok(error_reply(403, code, &msg));
    }
    let caller = match &verified {
        Ok(Some(key)) => caller_account(&state, key),
        _ => state.options.lock().unwrap().account.clone().unwrap_or_else(|| crate::DEFAULT_ACCOUNT.into()),
    };
    let region = scope_region(&headers).unwrap_or_else(|| "us-east-1".into());
    let action = match (parts.method.as_str(), path.as_str()) {
        ("POST", "/findings/import") => Some("BatchImportFindings"),
        ("GET", "/accounts") => Some("DescribeHub"),
        ("GET", "/productSubscriptions") => Some("ListEnabledProductsForImport"),
        _ => None,
    };
    if let Some(action) = action {
        let options = state.options.lock().unwrap();
        if options.denied.iter().any(|d| d == action) {
            return Ok(error_reply(
                403,
                "AccessDeniedException",
                &format!(
                    "User: arn:aws:iam::{caller}:user/hubsim is not authorized to perform: securityhub:{action}"
                ),
            ));
        }
        if options.hub_disabled {
            return Ok(error_reply(
                401,
                "InvalidAccessException",
                &format!("Account {caller} is not subscribed to AWS Security Hub"),
            ));
        }
    }
    match (parts.method.as_str(), path.as_str()) {
        ("POST", "/") if crate::sts::is_action(&crate::sts::form(&body), "GetCallerIdentity") => {
            let xml = format!(
                "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><GetCallerIdentityResult>\
<Arn>arn:aws:iam::{caller}:user/hubsim</Arn><UserId>AIDAHUBSIM</UserId><Account>{caller}</Account>\
</GetCallerIdentityResult><ResponseMetadata><RequestId>hubsim</RequestId></ResponseMetadata></GetCallerIdentityResponse>"
            );
            Ok(Response::builder()
                .status(200)
                .header("content-type", "text/xml")
                .body(Full::new(Bytes::from(xml)))
                .expect("a valid response"))
        }
        ("GET", "/accounts") => Ok(json_reply(
            StatusCode::OK,
            &json!({
                "HubArn": format!("arn:aws:securityhub:{region}:{caller}:hub/default"),
                "SubscribedAt": "2024-01-01T00:00:00.000Z",
                "AutoEnableControls": true,
            }),
        )),
        ("GET", "/productSubscriptions") => {
            let subscriptions = state.options.lock().unwrap().product_subscriptions.clone();
            Ok(json_reply(StatusCode::OK, &json!({ "ProductSubscriptions": subscriptions })))
        }
        ("POST", "/") if crate::sts::is_action(&crate::sts::form(&body), "AssumeRole") => {
            let roles = state.options.lock().unwrap().roles.clone();
            let result =
                crate::sts::assume_role(&crate::sts::form(&body), &roles, std::time::SystemTime::now());
            let mut stats = state.stats.lock().unwrap();
            let (status, xml) = match result {
                Ok(xml) => {
                    stats.assume_role_ok += 1;
                    (200, xml)
                }
                Err((status, xml)) => {
                    stats.assume_role_denied += 1;
                    (status, xml)
                }
            };
            Ok(Response::builder()
                .status(status)
                .header("content-type", "text/xml")
                .body(Full::new(Bytes::from(xml)))
                .expect("a valid response"))
        }
        ("POST", "/findings/import") => import(&state, &body).await,
        ("POST", "/findings") => Ok(get_findings(&state, &body)),
        _ => Ok(error_reply(
            404,
            "ResourceNotFoundException",
            &format!("no route for {} {path}", parts.method),
        )),
    }
}

/// The account an access key belongs to: a role's for its handed-out credentials, else the
/// configured account.
fn caller_account(state: &State, key: &str) -> String {
    let options = state.options.lock().unwrap();
    options
        .roles
        .iter()
        .find(|r| r.credentials.access_key == key)
        .and_then(|r| r.arn.split(':').nth(4).map(str::to_owned))
        .or_else(|| options.account.clone())
        .unwrap_or_else(|| crate::DEFAULT_ACCOUNT.into())
}

/// The Region of the SigV4 credential scope (`Credential=KEY/DATE/REGION/SERVICE/aws4_request`).
fn scope_region(headers: &[(String, String)]) -> Option<String> {
    let auth = headers.iter().find(|(n, _)| n == "authorization")?.1.as_str();
    let scope = auth.split("Credential=").nth(1)?;
    scope.split('/').nth(2).map(str::to_owned)
}

struct InFlight<'a>(&'a State);
impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.concurrent.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn import(state: &State, body: &Bytes) -> Result<Reply, Dropped> {
    let now = state.concurrent.fetch_add(1, Ordering::SeqCst) + 1;
    let _in_flight = InFlight(state);
    {
        let mut s = state.stats.lock().unwrap();
        s.requests += 1;
        s.max_concurrent = s.max_concurrent.max(now);
    }
    let mut stalled = state.stalled.subscribe();
    let _ = stalled.wait_for(|s| !*s).await;
    if !take_token(state) {
        state.stats.lock().unwrap().throttled += 1;
        return Ok(error_reply(429, "TooManyRequestsException", "Rate exceeded"));
    }
    if let Some(fault) = roll_request_fault(state) {
        state.stats.lock().unwrap().injected += 1;
        match fault {
            RequestFault::Internal => {
                return Ok(error_reply(500, "InternalException", "injected internal error"));
            }
            RequestFault::Unavailable => {
                return Ok(error_reply(503, "ServiceUnavailable", "injected unavailability"));
            }
            RequestFault::Throttle => {
                state.stats.lock().unwrap().throttled += 1;
                return Ok(error_reply(429, "TooManyRequestsException", "Rate exceeded (injected)"));
            }
            RequestFault::Drop => return Err(Dropped),
            RequestFault::Delay(d) => tokio::time::sleep(d).await,
        }
    }
    match check_request(body) {
        Ok(findings) => {
            {
                let mut s = state.stats.lock().unwrap();
                s.largest_request = s.largest_request.max(findings.len() as u64);
            }
            Ok(json_reply(StatusCode::OK, &store(state, findings)))
        }
        Err((status, code, message)) => {
            state.stats.lock().unwrap().invalid_requests += 1;
            Ok(error_reply(status, code, &message))
        }
    }
}

fn take_token(state: &State) -> bool {
    let Some(quota) = state.options.lock().unwrap().quota else {
        return true;
    };
    let mut b = state.bucket.lock().unwrap();
    let now = Instant::now();
    b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * quota.rate).min(quota.burst);
    b.at = now;
    if b.tokens >= 1.0 {
        b.tokens -= 1.0;
        true
    } else {
        false
    }
}

fn roll_request_fault(state: &State) -> Option<RequestFault> {
    let options = state.options.lock().unwrap();
    let f = &options.faults;
    let mut rng = state.rng.lock().unwrap();
    if f.request_kinds.is_empty() || rng.f64() >= f.request_rate {
        return None;
    }
    Some(f.request_kinds[rng.usize(..f.request_kinds.len())])
}

/// The request-level limits; per-finding checks happen in `store`.
/// A refused request: status, error code, message.
type Refused = (u16, &'static str, String);

fn check_request(body: &Bytes) -> Result<Vec<Box<serde_json::value::RawValue>>, Refused> {
    if body.len() > MAX_BODY_BYTES {
        return Err((
            413,
            "RequestEntityTooLargeException",
            format!("request body of {} bytes is over {MAX_BODY_BYTES}", body.len()),
        ));
    }
    #[derive(serde::Deserialize)]
    struct Input {
        #[serde(rename = "Findings")]
        findings: Vec<Box<serde_json::value::RawValue>>,
    }
    let input: Input = serde_json::from_slice(body)
        .map_err(|e| (400, "InvalidInputException", format!("Findings: could not parse the request: {e}")))?;
    if input.findings.len() > MAX_FINDINGS {
        return Err((
            400,
            "InvalidInputException",
            format!(
                "Findings: {} findings in one request; the maximum is {MAX_FINDINGS}",
                input.findings.len()
            ),
        ));
    }
    Ok(input.findings)
}

/// The fields Security Hub requires, borrowed from the request; `None` when absent.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Head<'a> {
    #[serde(borrow)]
    schema_version: Option<Cow<'a, str>>,
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    product_arn: Option<Cow<'a, str>>,
    #[serde(borrow)]
    generator_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    aws_account_id: Option<Cow<'a, str>>,
    types: Option<Vec<IgnoredAny>>,
    #[serde(borrow)]
    created_at: Option<Cow<'a, str>>,
    #[serde(borrow)]
    updated_at: Option<Cow<'a, str>>,
    severity: Option<SeverityHead>,
    #[serde(borrow)]
    title: Option<Cow<'a, str>>,
    #[serde(borrow)]
    description: Option<Cow<'a, str>>,
    resources: Option<Vec<IgnoredAny>>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SeverityHead {
    label: Option<IgnoredAny>,
    normalized: Option<IgnoredAny>,
}

/// Security Hub's per-finding rules, written independently of the agent's validator.
fn finding_problem(raw: &str, head: &Head) -> Option<String> {
    if raw.len() > MAX_FINDING_BYTES {
        return Some(format!("Finding size {} exceeds the maximum of {MAX_FINDING_BYTES} bytes", raw.len()));
    }
    let missing = [
        ("SchemaVersion", head.schema_version.is_none()),
        ("Id", head.id.is_none()),
        ("ProductArn", head.product_arn.is_none()),
        ("GeneratorId", head.generator_id.is_none()),
        ("AwsAccountId", head.aws_account_id.is_none()),
        ("Types", head.types.is_none()),
        ("CreatedAt", head.created_at.is_none()),
        ("UpdatedAt", head.updated_at.is_none()),
        ("Severity", head.severity.is_none()),
        ("Title", head.title.is_none()),
        ("Description", head.description.is_none()),
        ("Resources", head.resources.is_none()),
    ];
    if let Some((name, _)) = missing.iter().find(|(_, absent)| *absent) {
        return Some(format!("Finding does not adhere to ASFF: missing required field {name}"));
    }
    let chars = |v: &Option<Cow<str>>, max: usize| {
        v.as_deref().is_some_and(|s| (1..=max).contains(&s.chars().count()))
    };
    let account = head.aws_account_id.as_deref().unwrap_or_default();
    let severity = head.severity.as_ref().expect("checked above");
    let checks = [
        (head.schema_version.as_deref() == Some("2018-10-08"), "SchemaVersion must be 2018-10-08"),
        (chars(&head.id, 512), "Id must be 1-512 characters"),
        (chars(&head.generator_id, 512), "GeneratorId must be 1-512 characters"),
        (chars(&head.title, 256), "Title must be 1-256 characters"),
        (chars(&head.description, 1024), "Description must be 1-1024 characters"),
        (
            account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()),
            "AwsAccountId must be 12 digits",
        ),
        (
            head.resources.as_ref().is_some_and(|r| (1..=32).contains(&r.len())),
            "Resources must have 1-32 entries",
        ),
        (head.types.as_ref().is_some_and(|t| (1..=50).contains(&t.len())), "Types must have 1-50 entries"),
        (severity.label.is_some() || severity.normalized.is_some(), "Severity needs a Label"),
    ];
    checks.iter().find(|(ok, _)| !ok).map(|(_, msg)| (*msg).to_owned())
}

fn store(state: &State, findings: Vec<Box<serde_json::value::RawValue>>) -> Value {
    let faults = state.options.lock().unwrap().faults.clone();
    let mut failed = Vec::new();
    let mut success = 0u64;
    for raw in findings {
        let head: Head = match serde_json::from_str(raw.get()) {
            Ok(h) => h,
            Err(e) => {
                failed.push(json!({"Id": "", "ErrorCode": "InvalidInput", "ErrorMessage": format!("Finding does not adhere to ASFF: {e}")}));
                continue;
            }
        };
        let id = head.id.as_deref().unwrap_or_default().to_owned();
        if let Some(message) = finding_problem(raw.get(), &head) {
            failed.push(json!({"Id": id, "ErrorCode": "InvalidInput", "ErrorMessage": message}));
            continue;
        }
        if faults.finding_invalid_rate > 0.0 && id_dice(&id) < faults.finding_invalid_rate {
            failed.push(json!({"Id": id, "ErrorCode": "InvalidInput", "ErrorMessage": "injected permanent rejection"}));
            continue;
        }
        if faults.finding_transient_rate > 0.0
            && state.rng.lock().unwrap().f64() < faults.finding_transient_rate
        {
            failed.push(json!({"Id": id, "ErrorCode": "InternalException", "ErrorMessage": "injected transient failure"}));
            continue;
        }
        success += 1;
        let updated_at = head.updated_at.as_deref().unwrap_or_default().to_owned();
        let key = (head.product_arn.as_deref().unwrap_or_default().to_owned(), id);
        drop(head);
        let mut stored = state.findings.lock().unwrap();
        let mut stats = state.stats.lock().unwrap();
        stats.accepted += 1;
        match stored.get(&key) {
            Some(old) if !later(&updated_at, &old.updated_at) => stats.stale += 1,
            Some(old) => {
                stats.updates += 1;
                let first_seen_ns = old.first_seen_ns;
                stored.insert(key, Stored { raw, updated_at, first_seen_ns });
            }
            None => {
                stored.insert(key, Stored { raw, updated_at, first_seen_ns: now_ns() });
            }
        }
    }
    state.stats.lock().unwrap().failed_findings += failed.len() as u64;
    json!({"SuccessCount": success, "FailedCount": failed.len(), "FailedFindings": failed})
}

fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// True when timestamp `a` is strictly later than `b` (RFC 3339 strings of the same shape
/// compare in time order once fractional seconds are padded; good enough for a stand-in).
fn later(a: &str, b: &str) -> bool {
    let norm = |v: &str| {
        let s = v.trim_end_matches('Z').to_owned();
        match s.split_once('.') {
            Some((whole, frac)) => format!("{whole}.{frac:0<9}"),
            None => format!("{s}.000000000"),
        }
    };
    norm(a) > norm(b)
}

/// A stable number in [0, 1) from an Id, so a permanent fault stays with its finding.
fn id_dice(id: &str) -> f64 {
    let mut h = id.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100000001b3));
    // splitmix64's finalizer, so that short, similar Ids spread over the whole range
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d049bb133111eb);
    h ^= h >> 31;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

fn get_findings(state: &State, body: &Bytes) -> Reply {
    let input: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let max = input["MaxResults"].as_u64().unwrap_or(100).clamp(1, 100) as usize;
    let start: usize = input["NextToken"].as_str().and_then(|t| t.parse().ok()).unwrap_or(0);
    let id_filter: Vec<String> = input["Filters"]["Id"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f["Value"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let stored = state.findings.lock().unwrap();
    let mut all: Vec<(&(String, String), &Stored)> =
        stored.iter().filter(|((_, id), _)| id_filter.is_empty() || id_filter.contains(id)).collect();
    all.sort_by(|a, b| a.0.cmp(b.0));
    let page: Vec<Value> = all.iter().skip(start).take(max).map(|(_, s)| s.value()).collect();
    let mut out = json!({"Findings": page});
    if start + max < all.len() {
        out["NextToken"] = json!((start + max).to_string());
    }
    json_reply(StatusCode::OK, &out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_compares_mixed_precision() {
        assert!(later("2024-01-01T00:00:01Z", "2024-01-01T00:00:00.999Z"));
        assert!(!later("2024-01-01T00:00:00.5Z", "2024-01-01T00:00:00.500000000Z"));
        assert!(later("2024-01-01T00:00:00.000000005Z", "2024-01-01T00:00:00Z"));
    }

    #[test]
    fn id_dice_is_stable_and_spread() {
        assert_eq!(id_dice("a"), id_dice("a"));
        let low = (0..1000).filter(|i| id_dice(&format!("id-{i}")) < 0.3).count();
        assert!((200..400).contains(&low), "{low}");
    }
}
