//! The wall clock a controller reads `now` from (kube's controllers take a `now func() time.Time` for the
//! same reason): the system's, or a manual one that only moves when a test moves it, so a test can bring
//! on a CronJob's next scheduled time without waiting for it.

use std::sync::{Arc, Mutex, PoisonError};

use jiff::{SignedDuration, Timestamp};

/// A source of the current time; clones share it.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// `None`: the system clock.
    manual: Option<Arc<Mutex<Timestamp>>>,
}

impl Clock {
    /// The system's clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock that reads `at` until [`Clock::set`] or [`Clock::advance`] moves it.
    pub fn manual(at: Timestamp) -> Self {
        Self {
            manual: Some(Arc::new(Mutex::new(at))),
        }
    }

    pub fn now(&self) -> Timestamp {
        match &self.manual {
            Some(t) => *t.lock().unwrap_or_else(PoisonError::into_inner),
            None => Timestamp::now(),
        }
    }

    /// Moves a manual clock to `at` (the system clock cannot be moved: nothing happens).
    pub fn set(&self, at: Timestamp) {
        if let Some(t) = &self.manual {
            *t.lock().unwrap_or_else(PoisonError::into_inner) = at;
        }
    }

    /// Moves a manual clock on by `by`.
    pub fn advance(&self, by: SignedDuration) {
        if let Some(t) = &self.manual {
            let mut t = t.lock().unwrap_or_else(PoisonError::into_inner);
            *t = t.saturating_add(by).unwrap_or(*t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_moved_and_its_clones_follow() {
        let start: Timestamp = "2026-12-07T10:00:00Z".parse().unwrap();
        let clock = Clock::manual(start);
        let seen_by_controller = clock.clone();
        assert_eq!(seen_by_controller.now(), start);
        clock.advance(SignedDuration::from_mins(5));
        assert_eq!(seen_by_controller.now().to_string(), "2026-12-07T10:05:00Z");
        clock.set(start);
        assert_eq!(seen_by_controller.now(), start);
        let system = Clock::system();
        system.set(start);
        assert!(system.now() > start);
    }
}
