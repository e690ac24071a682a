//! Rate control in front of every `BatchImportFindings` attempt: a token bucket (Security Hub's
//! quota is 10 requests/s, burst 30, per account and Region) whose rate adapts — additive
//! increase on success, multiplicative decrease on throttling, both jittered so a fleet of agents
//! sharing one quota does not move in step. Plain arithmetic over a `now` the caller passes in;
//! [`Limiter`] is the async wrapper.

use std::sync::Mutex;
use std::time::Duration;

/// A token bucket: `rate` tokens per second, at most `burst` saved up.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Duration,
}

impl TokenBucket {
    /// A full bucket at time `now`.
    pub fn new(rate: f64, burst: f64, now: Duration) -> Self {
        Self { rate, burst, tokens: burst, last: now }
    }

    fn refill(&mut self, now: Duration) {
        let elapsed = now.saturating_sub(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = self.last.max(now);
    }

    /// Takes a token, or says how long until one is there.
    pub fn take(&mut self, now: Duration) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }

    /// Changes the refill rate from `now` on.
    pub fn set_rate(&mut self, rate: f64, now: Duration) {
        self.refill(now);
        self.rate = rate;
    }

    /// Empties the bucket: after a throttle the server's bucket is empty too.
    pub fn drain(&mut self, now: Duration) {
        self.refill(now);
        self.tokens = self.tokens.min(0.0);
    }

    /// Tokens available at `now`.
    pub fn tokens(&mut self, now: Duration) -> f64 {
        self.refill(now);
        self.tokens
    }

    /// Current refill rate.
    pub fn rate(&self) -> f64 {
        self.rate
    }
}

/// The adaptive rate: a jittered multiplicative cut on throttling, then CUBIC-style recovery
/// (as TCP CUBIC and the AWS SDKs' adaptive retry mode do): back to the rate where the throttle
/// came within `K` seconds, flat near it, then probing beyond. Recovery depends on time since the
/// cut, not on how many requests succeeded, so an agent that sends more does not grow faster and
/// agents sharing a quota converge; an agent pushed to the floor probes its way back instead of
/// starving.
#[derive(Debug, Clone)]
pub struct Adaptive {
    ceiling: f64,
    floor: f64,
    /// Growth constant, requests/s per s³ (CUBIC's C, scaled to the ceiling).
    c: f64,
    /// The rate when the last throttle came (CUBIC's W_max).
    rate_max: f64,
    /// Seconds from the cut back to `rate_max`.
    k: f64,
    last_cut: Option<Duration>,
}

impl Adaptive {
    /// Starts at the ceiling.
    pub fn new(ceiling: f64, floor: f64) -> Self {
        Self {
            ceiling,
            floor: floor.min(ceiling),
            c: 0.04 * ceiling,
            rate_max: ceiling,
            k: 0.0,
            last_cut: None,
        }
    }

    /// The allowed rate at `now`.
    pub fn rate_at(&self, now: Duration) -> f64 {
        let Some(cut) = self.last_cut else { return self.ceiling };
        let t = now.saturating_sub(cut).as_secs_f64();
        (self.rate_max + self.c * (t - self.k).powi(3)).clamp(self.floor, self.ceiling)
    }

    /// A request sent at `sent` was throttled at `now`; `jitter` in `[0, 1)` picks the cut factor
    /// in `[0.5, 0.8)`. Requests sent before the last cut report the overload that cut was for,
    /// so they do not cut again. Returns the new rate.
    pub fn on_throttle(&mut self, sent: Duration, now: Duration, jitter: f64) -> f64 {
        if self.last_cut.is_none_or(|t| sent >= t) {
            let beta = 0.5 + 0.3 * jitter;
            self.rate_max = self.rate_at(now);
            self.k = (self.rate_max * (1.0 - beta) / self.c).cbrt();
            self.last_cut = Some(now);
        }
        self.rate_at(now)
    }
}

/// What the limiter reports for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateState {
    /// Current allowed requests/s.
    pub rate: f64,
    /// Tokens in the bucket.
    pub tokens: f64,
    /// Throttles seen.
    pub throttles: u64,
}

/// Settings for one destination's limiter.
#[derive(Debug, Clone, Copy)]
pub struct RateSettings {
    /// Ceiling, requests per second.
    pub requests_per_second: f64,
    /// Bucket size.
    pub burst: f64,
    /// Adapt to throttling (AIMD); off = a fixed bucket.
    pub adaptive: bool,
    /// The rate never drops below this.
    pub min_requests_per_second: f64,
}

struct Inner {
    bucket: TokenBucket,
    adaptive: Adaptive,
    throttles: u64,
}

/// The async limiter shared by a destination's requests.
pub struct Limiter {
    start: tokio::time::Instant,
    adaptive: std::sync::atomic::AtomicBool,
    inner: Mutex<Inner>,
}

impl Limiter {
    /// A limiter with a full bucket.
    pub fn new(s: RateSettings) -> Self {
        Self {
            start: tokio::time::Instant::now(),
            adaptive: std::sync::atomic::AtomicBool::new(s.adaptive),
            inner: Mutex::new(Inner {
                bucket: TokenBucket::new(s.requests_per_second, s.burst, Duration::ZERO),
                adaptive: Adaptive::new(s.requests_per_second, s.min_requests_per_second),
                throttles: 0,
            }),
        }
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a token; returns the send time to hand back to [`Limiter::throttled`].
    pub async fn acquire(&self) -> Duration {
        loop {
            let now = self.now();
            let wait = {
                let mut i = self.lock();
                if self.adaptive.load(std::sync::atomic::Ordering::Relaxed) {
                    let rate = i.adaptive.rate_at(now);
                    i.bucket.set_rate(rate, now);
                }
                i.bucket.take(now)
            };
            match wait {
                Ok(()) => return now,
                // Waiting for a refill: add up to half an interval at random. The tokens accrue
                // meanwhile, so the rate is the same on average, but the send no longer lands
                // exactly on the server's refill: an agent at the full quota cannot take every
                // refill before the others, so throttles (and cuts) fall on agents by their share.
                Err(wait) => {
                    let rate = self.lock().bucket.rate();
                    let jitter = Duration::from_secs_f64(fastrand::f64() * 0.5 / rate.max(1e-3));
                    tokio::time::sleep(wait + jitter).await;
                }
            }
        }
    }

    /// A request sent at `sent` was throttled; `retry_after` from the response, if any, empties
    /// the bucket for that long.
    /// Returns the state after, and whether this throttle cut the rate (for the log).
    pub fn throttled(&self, sent: Duration, retry_after: Option<Duration>) -> (RateState, bool) {
        let now = self.now();
        let mut i = self.lock();
        i.throttles += 1;
        let before = i.bucket.rate();
        if self.adaptive.load(std::sync::atomic::Ordering::Relaxed) {
            let rate = i.adaptive.on_throttle(sent, now, fastrand::f64());
            i.bucket.set_rate(rate, now);
        }
        i.bucket.drain(now);
        if let Some(wait) = retry_after {
            // Owe the tokens that would accrue while we must wait.
            let rate = i.bucket.rate();
            i.bucket.tokens -= wait.as_secs_f64() * rate;
        }
        let state = RateState { rate: i.bucket.rate(), tokens: i.bucket.tokens(now), throttles: i.throttles };
        (state, i.bucket.rate() < before)
    }

    /// New settings from a configuration reload; the bucket keeps its tokens up to the new burst.
    pub fn update(&self, s: RateSettings) {
        let now = self.now();
        let mut i = self.lock();
        let tokens = i.bucket.tokens(now).min(s.burst);
        i.bucket = TokenBucket::new(s.requests_per_second, s.burst, now);
        i.bucket.tokens = tokens;
        i.adaptive = Adaptive::new(s.requests_per_second, s.min_requests_per_second);
        self.adaptive.store(s.adaptive, std::sync::atomic::Ordering::Relaxed);
    }

    /// The current state.
    pub fn state(&self) -> RateState {
        let now = self.now();
        let mut i = self.lock();
        let rate = if self.adaptive.load(std::sync::atomic::Ordering::Relaxed) {
            i.adaptive.rate_at(now)
        } else {
            i.bucket.rate()
        };
        RateState { rate, tokens: i.bucket.tokens(now), throttles: i.throttles }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: f64) -> Duration {
        Duration::from_secs_f64(x)
    }

    #[test]
    fn bucket_allows_burst_then_rate() {
        let mut b = TokenBucket::new(10.0, 30.0, s(0.0));
        let burst = (0..100).take_while(|_| b.take(s(0.0)).is_ok()).count();
        assert_eq!(burst, 30);
        let wait = b.take(s(0.0)).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        // Over 10 simulated seconds, exactly 100 more requests pass.
        let mut passed = 0;
        let mut t = 0.0;
        while t < 10.0 {
            t += 0.001;
            if b.take(s(t)).is_ok() {
                passed += 1;
            }
        }
        assert!((99..=101).contains(&passed), "{passed}");
    }

    #[test]
    fn bucket_never_saves_beyond_burst() {
        let mut b = TokenBucket::new(10.0, 30.0, s(0.0));
        assert_eq!(b.tokens(s(1000.0)), 30.0);
    }

    #[test]
    fn drained_bucket_waits_for_a_full_token() {
        let mut b = TokenBucket::new(4.0, 30.0, s(0.0));
        b.drain(s(0.0));
        assert_eq!(b.take(s(0.0)), Err(s(0.25)));
        assert!(b.take(s(0.25)).is_ok());
    }

    #[test]
    fn cut_is_multiplicative_and_once_per_overload() {
        let mut a = Adaptive::new(10.0, 0.05);
        assert_eq!(a.rate_at(s(5.0)), 10.0, "full rate until the first throttle");
        let after = a.on_throttle(s(0.0), s(0.1), 0.0);
        assert!((after - 5.0).abs() < 1e-9, "{after}");
        let again = a.on_throttle(s(0.05), s(0.11), 0.0);
        assert!((again - 5.0).abs() < 0.1, "sent before the cut: the same overload ({again})");
        let second = a.on_throttle(s(0.2), s(0.2), 0.0);
        assert!(second < 3.0, "sent after the cut: a new overload ({second})");
    }

    #[test]
    fn recovery_returns_to_the_throttle_rate_in_k_seconds_then_probes() {
        let mut a = Adaptive::new(10.0, 0.05);
        a.on_throttle(s(0.0), s(0.0), 2.0 / 3.0); // beta 0.7: 10 -> 7
        assert!((a.rate_at(s(0.0)) - 7.0).abs() < 1e-9);
        let k = (10.0f64 * 0.3 / 0.4).cbrt(); // ≈ 1.96 s
        assert!((a.rate_at(s(k)) - 10.0).abs() < 1e-9);
        let mut last = 0.0;
        for i in 0..100 {
            let r = a.rate_at(s(i as f64 * 0.05));
            assert!(r >= last - 1e-12, "never falls between throttles");
            last = r;
        }
        assert!(a.rate_at(s(k * 0.5)) > 9.0, "concave: most of the way back in half the time");
    }

    #[test]
    fn a_rate_pushed_to_the_floor_probes_back_up() {
        let mut a = Adaptive::new(10.0, 0.05);
        for i in 0..30 {
            a.on_throttle(s(i as f64 * 0.001), s(i as f64 * 0.001), 0.0);
        }
        let low = a.rate_at(s(0.03));
        assert!((0.05..0.06).contains(&low), "a storm of throttles: down to the floor ({low})");
        assert!(a.rate_at(s(10.0)) > 5.0, "ten seconds without throttles: probing well above the floor");
    }

    #[test]
    fn jitter_keeps_the_cut_between_half_and_four_fifths() {
        for j in [0.0, 0.25, 0.5, 0.999] {
            let mut a = Adaptive::new(10.0, 0.05);
            let r = a.on_throttle(s(0.0), s(0.0), j);
            assert!((5.0 - 1e-9..8.0).contains(&r), "{j}: {r}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn limiter_paces_requests_in_virtual_time() {
        let l = Limiter::new(RateSettings {
            requests_per_second: 10.0,
            burst: 30.0,
            adaptive: true,
            min_requests_per_second: 0.05,
        });
        let start = tokio::time::Instant::now();
        for _ in 0..130 {
            l.acquire().await;
        }
        let elapsed = start.elapsed().as_secs_f64();
        assert!(
            (elapsed - 10.0).abs() < 0.1,
            "30 at once then 100 at 10/s, give or take the last jitter: {elapsed}"
        );
        let sent = l.acquire().await;
        l.throttled(sent, Some(Duration::from_secs(2)));
        let st = l.state();
        assert_eq!(st.throttles, 1);
        assert!(st.rate <= 8.0 && st.rate >= 5.0);
        let t = tokio::time::Instant::now();
        l.acquire().await;
        assert!(t.elapsed() >= Duration::from_secs(2), "Retry-After honoured");
    }
}
