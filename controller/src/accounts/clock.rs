//! Where account expiries (sessions, API tokens, invites) read the time. Outside tests it is
//! the system clock; a test moves its own clock forward instead of sleeping until a token
//! expires.

use std::fmt;
use std::sync::Arc;

use time::OffsetDateTime;

/// A source of "now"; cheap to clone.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> OffsetDateTime + Send + Sync>);

// === impl Clock ===

impl Clock {
    /// The system clock, truncated to microseconds like every stored timestamp.
    pub fn system() -> Self {
        Self(Arc::new(crate::store::now))
    }

    /// A clock that reads `now`.
    pub fn new(now: impl Fn() -> OffsetDateTime + Send + Sync + 'static) -> Self {
        Self(Arc::new(now))
    }

    /// The time now.
    pub fn now(&self) -> OffsetDateTime {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}
