//! Clock skew between peers: noticing a peer whose clock runs ahead of ours.
//!
//! Every announce carries the sender's HLC as it reads now (its clock's last timestamp or its
//! wall clock, whichever is later), so the receiver can compare it with its own wall clock. A
//! peer more than [`MAX_CLOCK_SKEW_MS`] ahead is still exchanged with — its commits are data
//! like any other, and every node orders them alike by their stamps — but our HLC does not
//! follow it past the bound (`Hlc::adopt` in db/clock.rs), and the operator is told, in the log,
//! once a minute per peer: its writes win LastWriteWins conflicts against concurrent ones until
//! real time catches up with its stamps, which only fixing its clock cures.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::db::Hlc;
pub use crate::db::clock::MAX_CLOCK_SKEW_MS;

/// How often one peer's skew is logged again while it lasts.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// Most peers remembered as warned about (a bound, not a cache policy: past it, the map is
/// cleared and a peer may be warned about once more early).
const MAX_WARNED: usize = 1024;

/// Which peers we warned about, and when.
#[derive(Debug, Default)]
pub struct SkewWatch {
    warned: Mutex<HashMap<String, Instant>>,
}

impl SkewWatch {
    /// How far ahead of `now_ms` (our wall clock) the HLC `theirs`, announced by `node`, is, if
    /// beyond the bound; logs it (at most once per [`WARN_EVERY`] per node).
    pub fn check(&self, node: &str, theirs: Hlc, now_ms: u64, now: Instant) -> Option<u64> {
        let ahead = theirs.millis.saturating_sub(now_ms);
        if ahead <= MAX_CLOCK_SKEW_MS {
            return None;
        }
        let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        let due = warned
            .get(node)
            .is_none_or(|t| now.saturating_duration_since(*t) >= WARN_EVERY);
        if due {
            if warned.len() >= MAX_WARNED {
                warned.clear();
            }
            warned.insert(node.to_owned(), now);
            log::warn!(
                "gossip: node {node}'s clock is {} s ahead of ours (bound {} s): its commits are \
                 taken, but our clock does not follow them past the bound, and its writes win \
                 last-write-wins conflicts until real time catches up; fix that node's clock",
                ahead / 1000,
                MAX_CLOCK_SKEW_MS / 1000
            );
        }
        Some(ahead)
    }
}

/// The HLC an announce carries: the clock's last timestamp, or the wall clock if later.
pub fn reading(hlc: Hlc, now_ms: u64) -> Hlc {
    hlc.max(Hlc {
        millis: now_ms,
        counter: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(millis: u64) -> Hlc {
        Hlc { millis, counter: 0 }
    }

    #[test]
    fn a_peer_within_the_bound_is_not_flagged() {
        let w = SkewWatch::default();
        let now = Instant::now();
        assert_eq!(w.check("a", at(1_000), 1_000_000, now), None);
        assert_eq!(
            w.check("a", at(1_000_000 + MAX_CLOCK_SKEW_MS), 1_000_000, now),
            None
        );
    }

    #[test]
    fn a_peer_an_hour_ahead_is_flagged_every_time_and_logged_once_a_minute() {
        let w = SkewWatch::default();
        let now = Instant::now();
        let hour = at(1_000_000 + 3_600_000);
        assert_eq!(w.check("s", hour, 1_000_000, now), Some(3_600_000));
        let first = *w.warned.lock().unwrap().get("s").unwrap();
        assert_eq!(
            w.check("s", hour, 1_000_000, now + Duration::from_secs(1)),
            Some(3_600_000)
        );
        assert_eq!(*w.warned.lock().unwrap().get("s").unwrap(), first);
        let later = now + WARN_EVERY;
        w.check("s", hour, 1_000_000, later);
        assert_eq!(*w.warned.lock().unwrap().get("s").unwrap(), later);
    }

    #[test]
    fn the_announced_reading_is_never_behind_the_wall_clock_or_the_clock() {
        assert_eq!(reading(at(5), 10), at(10));
        let ahead = Hlc {
            millis: 20,
            counter: 3,
        };
        assert_eq!(reading(ahead, 10), ahead);
    }
}
