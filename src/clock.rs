//! The one source of wall-clock time for everything that compares with Unix times: session
//! expiry, login-flow age, token `exp`/`nbf`/`iat`.
//!
//! It is injected ([`Clock`]) rather than read where needed, so tests can put a session past
//! its expiry or a token past its `exp` without waiting, and so there is exactly one place
//! that reads the system clock. Monotonic durations (timeouts, latencies) use
//! `std::time::Instant` and are not this module's business.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A moment as Unix time, to microseconds: what cookies and tokens carry (in seconds) and
/// what orders login flows started within one second (in microseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct UnixTime(Duration);

impl UnixTime {
    /// `secs` seconds after the epoch.
    pub const fn from_secs(secs: u64) -> UnixTime {
        UnixTime(Duration::from_secs(secs))
    }

    /// `micros` microseconds after the epoch.
    pub const fn from_micros(micros: u64) -> UnixTime {
        UnixTime(Duration::from_micros(micros))
    }

    /// Whole seconds since the epoch (JWT NumericDate, cookie expiry).
    pub fn secs(self) -> u64 {
        self.0.as_secs()
    }

    /// Microseconds since the epoch, saturating (in the year 586,912).
    pub fn micros(self) -> u64 {
        u64::try_from(self.0.as_micros()).unwrap_or(u64::MAX)
    }

    /// This moment `d` later, saturating.
    pub fn plus(self, d: Duration) -> UnixTime {
        UnixTime(self.0.saturating_add(d))
    }
}

/// Where the current time comes from.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> UnixTime;
}

/// A shared clock, as the stages hold it.
pub type SharedClock = Arc<dyn Clock>;

/// The system's wall clock. A clock set before 1970 reads as the epoch: every token and
/// session then looks expired or not yet valid, which fails closed.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        UnixTime(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        )
    }
}

/// The system clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock that moves only when told to: for tests that need a session or a token to age.
#[derive(Debug)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// Starting at the system's current time, so that tokens minted now are valid.
    pub fn starting_now() -> Arc<ManualClock> {
        Arc::new(ManualClock(AtomicU64::new(SystemClock.now().micros())))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let micros = u64::try_from(by.as_micros()).unwrap_or(u64::MAX);
        self.0.fetch_add(micros, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixTime {
        UnixTime::from_micros(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::starting_now();
        let t0 = clock.now();
        assert_eq!(clock.now(), t0);
        clock.advance(Duration::from_secs(90));
        assert_eq!(clock.now().secs(), t0.secs() + 90);
        assert_eq!(t0.plus(Duration::from_micros(5)).micros(), t0.micros() + 5);
    }
}
