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

/// Additive-increase / multiplicative-decrease of a request rate between a floor and a ceiling.
#[derive(Debug, Clone)]
pub struct Aimd {
    ceiling: f64,
    floor: f64,
    rate: f64,
    /// Requests/s added per second of successes, whatever the request rate: an increase per
    /// request would favour the agents already sending most, and a fleet would not converge to
    /// equal shares. A hundredth of the ceiling: 5 → 10 requests/s takes 50 s.
    step: f64,
    /// When the rate last grew.
    last_increase: Option<Duration>,

    last_decrease: Option<Duration>,
}

impl Aimd {
    /// Starts at the ceiling.
    pub fn new(ceiling: f64, floor: f64) -> Self {
        Self {
            ceiling,
            floor: floor.min(ceiling),
            rate: ceiling,
            step: ceiling / 100.0,
            last_increase: None,
            last_decrease: None,
        }
    }

    /// The current rate.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// A request succeeded at `now`: the rate grows by `step` per second since the last growth
    /// (at most one second's worth); `jitter` in `[0, 1)` spreads it (0.5x to 1.5x).
    pub fn on_success(&mut self, now: Duration, jitter: f64) -> f64 {
        let since =
            self.last_increase.map_or(Duration::ZERO, |t| now.saturating_sub(t)).min(Duration::from_secs(1));
        self.last_increase = Some(now);
        self.rate = (self.rate + self.step * since.as_secs_f64() * (0.5 + jitter)).min(self.ceiling);
        self.rate
    }

    /// A request sent at `sent` was throttled at `now`; `jitter` in `[0, 1)` picks a factor in
    /// `[0.5, 0.8)`. Requests sent before the last cut report the overload that cut was for, so
    /// they do not cut again.
    pub fn on_throttle(&mut self, sent: Duration, now: Duration, jitter: f64) -> f64 {
        if self.last_decrease.is_none_or(|t| sent >= t) {
            self.rate = (self.rate * (0.5 + 0.3 * jitter)).max(self.floor);
            self.last_decrease = Some(now);
        }
        self.rate
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
    aimd: Aimd,
    throttles: u64,
}

/// The async limiter shared by a destination's requests.
pub struct Limiter {
    start: tokio::time::Instant,
    adaptive: bool,
    inner: Mutex<Inner>,
}

impl Limiter {
    /// A limiter with a full bucket.
    pub fn new(s: RateSettings) -> Self {
        Self {
            start: tokio::time::Instant::now(),
            adaptive: s.adaptive,
            inner: Mutex::new(Inner {
                bucket: TokenBucket::new(s.requests_per_second, s.burst, Duration::ZERO),
                aimd: Aimd::new(s.requests_per_second, s.min_requests_per_second),
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
            let wait = self.lock().bucket.take(now);
            match wait {
                Ok(()) => return now,
                Err(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    /// A request succeeded.
    pub fn success(&self) {
        if self.adaptive {
            let now = self.now();
            let mut i = self.lock();
            let rate = i.aimd.on_success(now, fastrand::f64());
            i.bucket.set_rate(rate, now);
        }
    }

    /// A request sent at `sent` was throttled; `retry_after` from the response, if any, empties
    /// the bucket for that long.
    pub fn throttled(&self, sent: Duration, retry_after: Option<Duration>) {
        let now = self.now();
        let mut i = self.lock();
        i.throttles += 1;
        if self.adaptive {
            let rate = i.aimd.on_throttle(sent, now, fastrand::f64());
            i.bucket.set_rate(rate, now);
        }
        i.bucket.drain(now);
        if let Some(wait) = retry_after {
            // Owe the tokens that would accrue while we must wait.
            let rate = i.bucket.rate();
            i.bucket.tokens -= wait.as_secs_f64() * rate;
        }
    }

    /// The current state.
    pub fn state(&self) -> RateState {
        let now = self.now();
        let mut i = self.lock();
        RateState { rate: i.bucket.rate(), tokens: i.bucket.tokens(now), throttles: i.throttles }
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
    fn aimd_halves_once_per_burst_of_throttles_and_recovers_linearly() {
        let mut a = Aimd::new(10.0, 0.5);
        assert_eq!(a.on_throttle(s(0.0), s(0.1), 0.0), 5.0);
        assert_eq!(a.on_throttle(s(0.05), s(0.3), 0.0), 5.0, "sent before the cut: same overload");
        assert_eq!(a.on_throttle(s(0.2), s(0.5), 0.0), 2.5, "sent after the cut: a new overload");
        // 0.1 requests/s per second (jitter 0.5): +5 in 50 s, however many requests.
        a.on_success(s(1.0), 0.5);
        for i in 1..=500 {
            a.on_success(s(1.0 + i as f64 * 0.1), 0.5);
        }
        assert!((a.rate() - 7.5).abs() < 1e-6, "{}", a.rate());
        let mut b = a.clone();
        a.on_success(s(51.1), 0.5);
        b.on_success(s(51.1), 0.5);
        b.on_success(s(51.1), 0.5); // a second success at the same instant adds nothing
        assert_eq!(a.rate(), b.rate());
        for i in 0..40 {
            a.on_success(s(52.0 + i as f64), 0.99);
        }
        assert_eq!(a.rate(), 10.0, "never above the ceiling");
    }

    #[test]
    fn aimd_respects_floor_and_jitter_bounds() {
        let mut a = Aimd::new(10.0, 1.0);
        for i in 0..20 {
            let before = a.rate();
            let after = a.on_throttle(s(i as f64 * 2.0), s(i as f64 * 2.0), 0.999);
            assert!(after >= 1.0);
            assert!(after <= (before * 0.8).max(1.0) + 1e-9);
            assert!(after >= (before * 0.5).max(1.0) - 1e-9);
        }
        assert_eq!(a.rate(), 1.0);
        let mut b = Aimd::new(10.0, 1.0);
        b.on_throttle(s(0.0), s(0.0), 0.0);
        b.on_success(s(1.0), 0.0);
        let r0 = b.rate();
        let lo = b.clone().on_success(s(2.0), 0.0) - r0;
        let hi = b.clone().on_success(s(5.0), 0.999) - r0;
        assert!((lo - 0.05).abs() < 1e-9 && hi < 0.15 && hi > 0.1498, "one second at most: {lo} {hi}");
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
        assert!((elapsed - 10.0).abs() < 0.05, "30 at once then 100 at 10/s: {elapsed}");
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
