//! A loopback stand-in for the EC2 instance metadata service, IMDSv2 only: a session token from
//! `PUT /latest/api/token` (with the TTL header, echoed back as the real service does) is
//! required on every read; it serves the instance identity document and role credentials that
//! expire and rotate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;

use crate::Credentials;

const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";

/// Role credentials to hand out, in turn, each valid for `valid_for` from when it is first served.
/// Like the real service, the next set is served ahead of expiry: from half the current one's life.
#[derive(Debug, Clone)]
pub struct RoleCredentials {
    /// The keys.
    pub credentials: Credentials,
    /// The session token the SDK sends as `x-amz-security-token`.
    pub token: String,
    /// Lifetime from first being served.
    pub valid_for: Duration,
}

/// What the instance looks like.
#[derive(Debug, Clone)]
pub struct Instance {
    /// Region in the identity document.
    pub region: String,
    /// Account id in the identity document.
    pub account_id: String,
    /// Instance id in the identity document.
    pub instance_id: String,
    /// The instance profile's role name.
    pub role: String,
    /// Credentials served one after the other: the next one from half the current one's life.
    pub credentials: Vec<RoleCredentials>,
}

/// Counters of what was asked.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImdsStats {
    /// Tokens issued.
    pub tokens: u64,
    /// Reads refused for a missing or unknown token (IMDSv1-style requests).
    pub refused: u64,
    /// Credential documents served.
    pub credentials_served: u64,
}

struct State {
    instance: Instance,
    /// Index into `instance.credentials` and when it expires (set when first served).
    current: Mutex<(usize, Option<SystemTime>)>,
    tokens: Mutex<Vec<String>>,
    next_token: AtomicU64,
    stats: Mutex<ImdsStats>,
}

/// A running IMDS stand-in; stops when dropped.
pub struct Imds {
    addr: std::net::SocketAddr,
    state: Arc<State>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Imds {
    /// Starts on `127.0.0.1` at a free port.
    pub async fn start(instance: Instance) -> std::io::Result<Imds> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            instance,
            current: Mutex::new((0, None)),
            tokens: Mutex::new(Vec::new()),
            next_token: AtomicU64::new(1),
            stats: Mutex::new(ImdsStats::default()),
        });
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let served = state.clone();
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    accepted = listener.accept() => match accepted { Ok((s, _)) => s, Err(_) => continue },
                    _ = &mut stopped => return,
                };
                let state = served.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(&state, req)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Imds { addr, state, _stop: stop })
    }

    /// `http://127.0.0.1:PORT`, for `AWS_EC2_METADATA_SERVICE_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Counters so far.
    pub fn stats(&self) -> ImdsStats {
        self.state.stats.lock().unwrap().clone()
    }
}

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder().status(status).body(Full::new(Bytes::from(body))).expect("a valid response")
}

fn handle(state: &State, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    if req.method() == hyper::Method::PUT && path == "/latest/api/token" {
        let Some(ttl) = req.headers().get(TTL_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned) else {
            return reply(StatusCode::BAD_REQUEST, "missing TTL header".into());
        };
        let token = format!("token-{}", state.next_token.fetch_add(1, Ordering::SeqCst));
        state.tokens.lock().unwrap().push(token.clone());
        state.stats.lock().unwrap().tokens += 1;
        let mut r = reply(StatusCode::OK, token);
        r.headers_mut().insert(TTL_HEADER, ttl.parse().expect("a valid header value"));
        return r;
    }
    let token = req.headers().get(TOKEN_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !state.tokens.lock().unwrap().iter().any(|t| t == token) {
        state.stats.lock().unwrap().refused += 1;
        return reply(StatusCode::UNAUTHORIZED, String::new());
    }
    let i = &state.instance;
    let creds_prefix = "/latest/meta-data/iam/security-credentials/";
    match path.as_str() {
        "/latest/dynamic/instance-identity/document" => reply(
            StatusCode::OK,
            json!({
                "accountId": i.account_id, "region": i.region, "instanceId": i.instance_id,
                "availabilityZone": format!("{}a", i.region), "architecture": "x86_64",
                "imageId": "ami-0123456789abcdef0", "instanceType": "t3.micro", "privateIp": "10.0.0.10",
                "pendingTime": "2026-01-01T00:00:00Z", "version": "2017-09-30",
            })
            .to_string(),
        ),
        "/latest/meta-data/placement/region" => reply(StatusCode::OK, i.region.clone()),
        p if p == creds_prefix => reply(StatusCode::OK, i.role.clone()),
        p if p.strip_prefix(creds_prefix) == Some(i.role.as_str()) => credentials(state),
        _ => reply(StatusCode::NOT_FOUND, String::new()),
    }
}

fn credentials(state: &State) -> Response<Full<Bytes>> {
    let now = SystemTime::now();
    let mut current = state.current.lock().unwrap();
    let all = &state.instance.credentials;
    if let (i, Some(expires)) = *current {
        if now + all[i].valid_for / 2 >= expires && i + 1 < all.len() {
            *current = (i + 1, None);
        }
    }
    let (i, expires) = *current;
    let rc = &all[i];
    let expires = expires.unwrap_or(now + rc.valid_for);
    *current = (i, Some(expires));
    state.stats.lock().unwrap().credentials_served += 1;
    let expiration = time::OffsetDateTime::from(expires)
        .format(&time::format_description::well_known::Rfc3339)
        .expect("a formattable time");
    reply(
        StatusCode::OK,
        json!({
            "Code": "Success", "LastUpdated": "2026-01-01T00:00:00Z", "Type": "AWS-HMAC",
            "AccessKeyId": rc.credentials.access_key, "SecretAccessKey": rc.credentials.secret_key,
            "Token": rc.token, "Expiration": expiration,
        })
        .to_string(),
    )
}
