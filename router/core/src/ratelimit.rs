//! Per-source token buckets for handshake initiations, so that a flood from a few
//! addresses cannot spend all our CPU on Diffie-Hellman and starve established sessions.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// Handshakes a source may start in a burst.
const BURST: f64 = 20.0;
/// Sustained handshakes per second per source.
const PER_SECOND: f64 = 10.0;
/// Sources tracked at once; beyond it, full buckets are forgotten first.
const MAX_SOURCES: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct HandshakeLimiter {
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl HandshakeLimiter {
    /// Takes one token for `src`; false when its bucket is empty.
    pub(crate) fn allow(&mut self, src: IpAddr, now: Instant) -> bool {
        if self.buckets.len() >= MAX_SOURCES && !self.buckets.contains_key(&src) {
            self.buckets.retain(|_, (tokens, last)| {
                *tokens + now.saturating_duration_since(*last).as_secs_f64() * PER_SECOND < BURST
            });
            if self.buckets.len() >= MAX_SOURCES {
                return false;
            }
        }
        let (tokens, last) = self.buckets.entry(src).or_insert((BURST, now));
        let refill = now.saturating_duration_since(*last).as_secs_f64() * PER_SECOND;
        *tokens = (*tokens + refill).min(BURST);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill_per_source() {
        let mut l = HandshakeLimiter::default();
        let t0 = Instant::now();
        let a: IpAddr = "198.18.0.1".parse().unwrap();
        let b: IpAddr = "198.18.0.2".parse().unwrap();
        let allowed = (0..100).filter(|_| l.allow(a, t0)).count();
        assert_eq!(allowed, BURST as usize);
        assert!(l.allow(b, t0), "another source is not affected");
        assert!(!l.allow(a, t0));
        assert!(l.allow(a, t0 + Duration::from_millis(150)));
    }
}
