//! What to run: the load steps, how each ends, deadlines and limits.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::error::LoadError;
use crate::format::trim_float;

/// One load level.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Load {
    /// `concurrency` calls in flight at all times.
    Closed { concurrency: usize },
    /// `rate` calls per second, on schedule.
    Open { rate: f64 },
}

impl fmt::Display for Load {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Load::Closed { concurrency } => write!(f, "concurrency {concurrency}"),
            Load::Open { rate } => write!(f, "rate {}/s", trim_float(*rate)),
        }
    }
}

/// When a step's measurement ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    /// After this long (calls in flight then are still awaited and counted).
    Duration(Duration),
    /// After this many calls have been sent.
    Requests(u64),
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Duration(d) => write!(f, "{}s", trim_float(d.as_secs_f64())),
            Stop::Requests(n) => write!(f, "{n} requests"),
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// One entry for a single run; several for a sweep (run in order).
    pub steps: Vec<Load>,
    /// Load applied before each step's measurement starts, not counted.
    pub warmup: Duration,
    pub stop: Stop,
    /// Deadline of each call (sent as the gRPC deadline and enforced here too).
    pub timeout: Duration,
    /// Open loop: most calls in flight before due calls are dropped.
    pub max_outstanding: usize,
    /// Seed for the choice of model and of input variant.
    pub seed: u64,
    /// Width of the time windows of [`StepReport::windows`](crate::StepReport::windows).
    pub window: Duration,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            steps: vec![Load::Closed { concurrency: 1 }],
            warmup: Duration::ZERO,
            stop: Stop::Duration(Duration::from_secs(10)),
            timeout: Duration::from_secs(30),
            max_outstanding: 1000,
            seed: 0,
            window: Duration::from_secs(1),
        }
    }
}

impl RunConfig {
    /// Checks the values (everything positive, finite, at least one step).
    pub fn validate(&self) -> Result<(), LoadError> {
        let bad = |m: String| Err(LoadError::Invalid(m));
        if self.steps.is_empty() {
            return bad("no load step to run".into());
        }
        for s in &self.steps {
            match *s {
                Load::Closed { concurrency } if concurrency == 0 || concurrency > 100_000 => {
                    return bad(format!("concurrency must be 1..=100000, not {concurrency}"));
                }
                Load::Open { rate } if !(rate.is_finite() && rate > 0.0 && rate <= 1e7) => {
                    return bad(format!(
                        "rate must be a positive number of requests/s, not {rate}"
                    ));
                }
                _ => {}
            }
        }
        match self.stop {
            Stop::Duration(d) if d.is_zero() => return bad("duration must be positive".into()),
            Stop::Requests(0) => return bad("requests must be at least 1".into()),
            _ => {}
        }
        if self.timeout.is_zero() {
            return bad("timeout must be positive".into());
        }
        if self.max_outstanding == 0 {
            return bad("max outstanding must be at least 1".into());
        }
        if self.window < Duration::from_millis(10) {
            return bad("window must be at least 10ms".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates() {
        assert!(RunConfig::default().validate().is_ok());
        let mut c = RunConfig {
            steps: vec![Load::Closed { concurrency: 0 }],
            ..RunConfig::default()
        };
        assert!(c.validate().is_err());
        c.steps = vec![Load::Open { rate: f64::NAN }];
        assert!(c.validate().is_err());
        c.steps = vec![Load::Open { rate: 10.0 }];
        c.stop = Stop::Requests(0);
        assert!(c.validate().is_err());
        c.stop = Stop::Requests(1);
        assert!(c.validate().is_ok());
        assert_eq!(Load::Open { rate: 12.5 }.to_string(), "rate 12.5/s");
        assert_eq!(
            Stop::Duration(Duration::from_millis(1500)).to_string(),
            "1.5s"
        );
    }
}
