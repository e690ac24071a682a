//! The sending loop: takes findings off the queue, fills requests, and keeps up to
//! `max_in_flight` requests going. Each request is owned by one task that retries until every
//! finding in it is settled: accepted, or dead-lettered with Security Hub's reason.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use super::client::{FailedFinding, HubClient, RequestFailure};
use super::rate::{Limiter, RateSettings};
use super::retry::{Backoff, Verdict, finding_error_is_transient};
use crate::pipeline::ack::DeadLetter;
use crate::pipeline::batch::{self, Batcher, MAX_BODY_BYTES};
use crate::pipeline::queue::{QueueRx, Queued};
use crate::pipeline::stats::Stats;
use crate::pipeline::{Lane, Observe};

/// How the sender batches and retries.
#[derive(Debug, Clone)]
pub struct SenderSettings {
    /// Findings per request.
    pub max_findings: usize,
    /// A partly filled request leaves after this long.
    pub flush_interval: Duration,
    /// Requests in flight at once.
    pub max_in_flight: usize,
    /// First backoff.
    pub initial_backoff: Duration,
    /// Largest backoff.
    pub max_backoff: Duration,
    /// Pause after an access error.
    pub access_denied_pause: Duration,
    /// After shutdown is requested, how long queued and in-flight findings still get.
    pub grace: Duration,
    /// The rate limit in front of every attempt.
    pub rate: RateSettings,
}

struct Ctx {
    client: HubClient,
    limiter: Limiter,
    settings: SenderSettings,
    stats: Arc<Stats>,
}

/// Runs until the queue is closed and drained, or until `shutdown` plus the grace period.
/// Findings still unsettled then are dropped unsettled, which leaves their files in the spool.
pub async fn run(
    client: HubClient,
    mut rx: QueueRx,
    settings: SenderSettings,
    observe: Observe,
    lane: Arc<Lane>,
    shutdown: CancellationToken,
) {
    let stats = observe.stats.clone();
    let mut batcher: Batcher<Queued> = Batcher::new(settings.max_findings, MAX_BODY_BYTES);
    let max_in_flight = settings.max_in_flight;
    let flush_interval = settings.flush_interval;
    let grace = settings.grace;
    let limiter = Limiter::new(settings.rate);
    let ctx = Arc::new(Ctx { client, limiter, settings, stats });
    let mut ready: VecDeque<Vec<Queued>> = VecDeque::new();
    let mut in_flight = JoinSet::new();
    let mut deadline: Option<Instant> = None;
    let mut closed = false;
    let grace_over = async {
        shutdown.cancelled().await;
        sleep(grace).await;
    };
    tokio::pin!(grace_over);
    let mut beat = tokio::time::interval(Duration::from_secs(1));
    loop {
        while in_flight.len() < max_in_flight {
            let Some(items) = ready.pop_front() else {
                break;
            };
            in_flight.spawn(deliver(ctx.clone(), items));
        }
        if closed && ready.is_empty() && batcher.pending() == 0 && in_flight.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            () = &mut grace_over => {
                let unsettled = batcher.pending() + ready.iter().map(Vec::len).sum::<usize>();
                warn!(requests_in_flight = in_flight.len(), unsettled, "shutdown grace period over; unsent findings stay in the spool");
                in_flight.abort_all();
                break;
            }
            _ = beat.tick() => {
                lane.heartbeat.fetch_add(1, Ordering::Relaxed);
                if let Some(new) = lane.new_rate.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    ctx.limiter.update(new);
                    info!(destination = %lane.name, requests_per_second = new.requests_per_second, burst = new.burst, adaptive = new.adaptive, "rate settings reloaded");
                }
                lane.rate.store(ctx.limiter.state().rate.to_bits(), Ordering::Relaxed);
            }
            Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => {
                if let Err(e) = joined {
                    if e.is_panic() {
                        error!(error = %e, "a delivery task panicked; its files stay in the spool");
                    }
                }
            }
            item = rx.recv(), if ready.is_empty() && !closed => match item {
                Some(q) => {
                    if batcher.pending() == 0 {
                        deadline = Some(Instant::now() + flush_interval);
                    }
                    ready.extend(batcher.push(q));
                    if batcher.pending() == 0 {
                        deadline = None;
                    }
                }
                None => {
                    closed = true;
                    ready.extend(batcher.flush());
                }
            },
            () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                deadline = None;
                ready.extend(batcher.flush());
            }
        }
    }
}

/// Sends one request's findings until each is settled.
async fn deliver(ctx: Arc<Ctx>, items: Vec<Queued>) {
    let s = &ctx.settings;
    let mut backoff = Backoff::new(s.initial_backoff, s.max_backoff);
    let mut work = vec![items];
    while let Some(mut items) = work.pop() {
        loop {
            let sent = ctx.limiter.acquire().await;
            let span = info_span!("request", findings = items.len());
            let started = std::time::Instant::now();
            let result = ctx.client.import(batch::body(&items)).instrument(span).await;
            ctx.stats.latency(started.elapsed());
            let wait = match result {
                Ok(failed) => {
                    ctx.stats.request(false, false);
                    backoff.reset();
                    items = settle(&ctx, items, &failed);
                    if items.is_empty() {
                        break;
                    }
                    ctx.stats.retried(items.len() as u64);
                    backoff.next_delay(fastrand::f64())
                }
                Err(failure) => {
                    ctx.stats.request(true, failure.verdict == Verdict::Throttled);
                    ctx.stats.failed(&failure.message);
                    if failure.verdict == Verdict::Throttled {
                        let (state, cut) = ctx.limiter.throttled(sent, failure.retry_after);
                        if cut {
                            info!(
                                rate = format!("{:.2}", state.rate),
                                tokens = format!("{:.1}", state.tokens),
                                throttles = state.throttles,
                                "throttled by Security Hub; sending slower"
                            );
                        }
                    }
                    match failure.verdict {
                        Verdict::BadRequest if items.len() > 1 => {
                            // One of these findings makes the whole request invalid: halve to find it.
                            debug!(findings = items.len(), error = %failure, "request refused; splitting it");
                            let second = items.split_off(items.len() / 2);
                            work.push(second);
                            work.push(items);
                            break;
                        }
                        Verdict::BadRequest => {
                            let q = items.pop().expect("one finding");
                            dead_letter(q, failure.code.as_deref().unwrap_or("BadRequest"), &failure.message);
                            break;
                        }
                        Verdict::AccessDenied => {
                            error!(
                                findings = items.len(),
                                error = %failure,
                                pause_s = s.access_denied_pause.as_secs(),
                                "Security Hub refused access (is Security Hub CSPM enabled in this Region, and may this role call securityhub:BatchImportFindings?); keeping the backlog and trying again"
                            );
                            s.access_denied_pause
                        }
                        // The adaptive limiter already lowered the rate and emptied its bucket:
                        // waiting for its next token is the backoff, and keeps agents sharing a
                        // quota on equal terms.
                        Verdict::Throttled if s.rate.adaptive => {
                            debug!(findings = items.len(), error = %failure, "throttled; the rate limiter paces the retry");
                            failure.retry_after.unwrap_or_default()
                        }
                        Verdict::Throttled | Verdict::Transient => {
                            retry_wait(&mut backoff, &failure, items.len())
                        }
                    }
                }
            };
            sleep(wait).await;
        }
    }
}

fn retry_wait(backoff: &mut Backoff, failure: &RequestFailure, findings: usize) -> Duration {
    let wait = backoff.next_delay(fastrand::f64()).max(failure.retry_after.unwrap_or_default());
    let attempts = backoff.attempts();
    if attempts >= 5 {
        warn!(findings, attempts, wait_ms = wait.as_millis() as u64, error = %failure, "request failed; retrying");
    } else {
        debug!(findings, attempts, wait_ms = wait.as_millis() as u64, error = %failure, "request failed; retrying");
    }
    wait
}

/// Settles the findings of a successful request; returns those to send again.
fn settle(ctx: &Ctx, items: Vec<Queued>, failed: &[FailedFinding]) -> Vec<Queued> {
    let failed: HashMap<&str, &FailedFinding> = failed.iter().map(|f| (f.id.as_str(), f)).collect();
    let mut again = Vec::new();
    let mut accepted = 0;
    for q in items {
        match failed.get(q.finding.id.as_str()) {
            None => {
                accepted += 1;
                q.ack.accepted();
            }
            Some(f) if finding_error_is_transient(&f.code) => again.push(q),
            Some(f) => {
                warn!(id = %q.finding.id, code = %f.code, message = %f.message, "Security Hub rejected a finding");
                dead_letter(q, &f.code, &f.message);
            }
        }
    }
    ctx.stats.accepted(accepted);
    again
}

fn dead_letter(q: Queued, code: &str, message: &str) {
    let letter = DeadLetter {
        index: None,
        id: Some(q.finding.id.clone()),
        code: code.to_owned(),
        message: message.to_owned(),
        raw: q.finding.json.clone(),
    };
    q.ack.dead_letter(letter, Some(q.permit));
}
