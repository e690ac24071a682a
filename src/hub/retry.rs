//! What to do after a request or a finding fails: the classification of Security Hub's errors
//! and the full-jitter exponential backoff. Plain arithmetic; the caller supplies randomness.

use std::time::Duration;

/// What a failed request calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Throttled (429, `TooManyRequestsException`, `LimitExceededException`): back off, retry.
    Throttled,
    /// 5xx, timeouts, connection errors: back off, retry.
    Transient,
    /// Security Hub is not enabled or the role lacks permission: pause, keep the backlog, retry.
    AccessDenied,
    /// The request itself was refused (4xx): a finding in it is bad. Split it to find which.
    BadRequest,
}

/// Classifies a failed request from its HTTP status and error code (either may be absent).
pub fn classify(status: Option<u16>, code: Option<&str>) -> Verdict {
    match code {
        Some(
            "TooManyRequestsException" | "LimitExceededException" | "ThrottlingException" | "Throttling",
        ) => {
            return Verdict::Throttled;
        }
        Some(
            "InvalidAccessException"
            | "AccessDeniedException"
            | "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "ExpiredTokenException"
            | "SignatureDoesNotMatch",
        ) => {
            return Verdict::AccessDenied;
        }
        Some(
            "InternalException"
            | "InternalServerError"
            | "ServiceUnavailable"
            | "ServiceUnavailableException",
        ) => {
            return Verdict::Transient;
        }
        _ => {}
    }
    match status {
        Some(429) => Verdict::Throttled,
        Some(401 | 403) => Verdict::AccessDenied,
        Some(408) => Verdict::Transient,
        Some(400..=499) => Verdict::BadRequest,
        _ => Verdict::Transient,
    }
}

/// Whether a per-finding `ErrorCode` from `FailedFindings` is worth retrying. Anything not known
/// to be transient is permanent: it goes to the dead-letter file with Security Hub's message,
/// so nothing is lost and nothing loops forever.
pub fn finding_error_is_transient(code: &str) -> bool {
    matches!(
        code,
        "InternalException"
            | "InternalError"
            | "InternalServerError"
            | "ServiceUnavailable"
            | "ServiceUnavailableException"
            | "TooManyRequestsException"
            | "LimitExceededException"
            | "ThrottlingException"
            | "Throttling"
            | "RequestTimeout"
    )
}

/// Exponential backoff with full jitter: attempt n waits a uniform time in `[0, min(max, initial·2ⁿ)]`.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A fresh backoff.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max, attempt: 0 }
    }

    /// The ceiling for the next wait, before jitter.
    pub fn ceiling(&self) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.min(31));
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The next wait; `unit` is a uniform random number in `[0, 1)`.
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        let delay = self.ceiling().mul_f64(unit.clamp(0.0, 1.0));
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// Failures in a row so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Back to the first step after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_security_hub_errors() {
        let cases: &[(Option<u16>, Option<&str>, Verdict)] = &[
            (Some(429), Some("TooManyRequestsException"), Verdict::Throttled),
            (Some(429), Some("LimitExceededException"), Verdict::Throttled),
            (Some(429), None, Verdict::Throttled),
            (Some(401), Some("InvalidAccessException"), Verdict::AccessDenied),
            (Some(403), Some("AccessDeniedException"), Verdict::AccessDenied),
            (Some(403), None, Verdict::AccessDenied),
            (Some(500), Some("InternalException"), Verdict::Transient),
            (Some(503), None, Verdict::Transient),
            (None, None, Verdict::Transient),
            (Some(400), Some("InvalidInputException"), Verdict::BadRequest),
            (Some(413), None, Verdict::BadRequest),
        ];
        for &(status, code, want) in cases {
            assert_eq!(classify(status, code), want, "{status:?} {code:?}");
        }
    }

    #[test]
    fn finding_errors_default_to_permanent() {
        assert!(finding_error_is_transient("InternalException"));
        assert!(finding_error_is_transient("TooManyRequestsException"));
        assert!(!finding_error_is_transient("InvalidInput"));
        assert!(!finding_error_is_transient("SomethingNew"));
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_jitter_stays_below_ceiling() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let ceilings: Vec<u64> = (0..8)
            .map(|_| {
                let c = b.ceiling().as_millis() as u64;
                assert_eq!(b.next_delay(1.0).as_millis() as u64, c);
                c
            })
            .collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1600, 2000, 2000, 2000]);
        assert_eq!(b.next_delay(0.0), Duration::ZERO);
        assert_eq!(b.next_delay(0.5), Duration::from_secs(1));
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
    }

    #[test]
    fn backoff_never_overflows() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        for _ in 0..1000 {
            assert!(b.next_delay(0.99) <= Duration::from_secs(30));
        }
    }
}
