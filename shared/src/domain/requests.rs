//! What a user may ask of the API, and how often: per-user limits, and requests made
//! idempotent by their `Idempotency-Key`.

use chrono::TimeDelta;

use crate::config::{ConfigError, Env};

/// How many requests of one class a user may make in each window of `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub class: &'static str,
    pub max: u32,
    pub window: TimeDelta,
}

impl Limit {
    /// The window the instant `now` (epoch seconds) falls in: its start and its end.
    pub fn window_at(&self, now: i64) -> (i64, i64) {
        let length = self.window.num_seconds().max(1);
        let start = now - now.rem_euclid(length);
        (start, start + length)
    }
}

/// The deployment's per-user limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserLimits {
    /// `/link/start` and `/link` (`USER_LIMIT_LINKS_PER_HOUR`, 30): each link reaches the
    /// broker and queues a full sync of every account.
    pub link: Limit,
    /// Manual syncs over all the user's accounts (`USER_LIMIT_TRIGGERS_PER_HOUR`, 120); each
    /// account has its own cooldown besides.
    pub trigger: Limit,
    /// Every other route (`USER_LIMIT_READS_PER_MINUTE`, 600).
    pub reads: Limit,
}

impl Default for UserLimits {
    fn default() -> Self {
        let limit = |class, max, window| Limit { class, max, window };
        Self {
            link: limit("link", 30, TimeDelta::hours(1)),
            trigger: limit("trigger", 120, TimeDelta::hours(1)),
            reads: limit("reads", 600, TimeDelta::minutes(1)),
        }
    }
}

impl UserLimits {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let max = |name, limit: Limit| -> Result<Limit, ConfigError> {
            Ok(Limit {
                max: env.parsed_or(name, limit.max)?,
                ..limit
            })
        };
        Ok(Self {
            link: max("USER_LIMIT_LINKS_PER_HOUR", defaults.link)?,
            trigger: max("USER_LIMIT_TRIGGERS_PER_HOUR", defaults.trigger)?,
            reads: max("USER_LIMIT_READS_PER_MINUTE", defaults.reads)?,
        })
    }
}

/// A limit's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// Over the limit until the window ends, this many seconds from now.
    Refused {
        retry_after: u64,
    },
}

/// What claiming an idempotency key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is new: the request runs, and its answer is kept.
    New,
    /// The key's request has been answered: this is the answer.
    Replay { status: u16, body: String },
    /// The key's first request is still running.
    InProgress,
    /// The key was used for a different request.
    Mismatch,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_starts_on_its_own_boundary_and_holds_the_instant() {
        let minute = UserLimits::default().reads;
        assert_eq!(minute.window_at(125), (120, 180));
        assert_eq!(minute.window_at(120), (120, 180));
        assert_eq!(UserLimits::default().link.window_at(7_199), (3_600, 7_200));
    }
}
