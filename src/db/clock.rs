//! Clocks: node ids, vector clocks and hybrid logical timestamps, and how they live in commits.
//!
//! Git ancestry is the truth about happened-before; the vector clock is the cheap digest peers
//! compare to ask "is there anything new?" and the first tie-breaker of LastWriteWins. The hybrid
//! logical clock (HLC) orders writes that the vector clock calls concurrent without trusting wall
//! clocks alone: it never runs backwards and always moves past any timestamp it has seen.
//!
//! Both are recorded in every gitdb commit as git trailers, which stock git shows and
//! `git interpret-trailers --parse` reads:
//!
//! ```text
//! Gitdb-Node: node-a
//! Gitdb-Clock: node-a=3 node-b=5
//! Gitdb-Hlc: 1764163200123.0
//! ```
//!
//! **Skew bound.** A timestamp read from a commit (a peer's, or a merge of one) moves this node's
//! HLC at most [`MAX_CLOCK_SKEW_MS`] past its own wall clock ([`Hlc::adopt`]): one node whose clock
//! is an hour ahead must not drag every node's clock, and the commit times git shows, an hour into
//! the future. The stamps inside commits are never changed, so every node still makes the same
//! LastWriteWins decision from them; a later local write still wins over the far-future one it
//! has seen, because LWW asks the vector clock (causality) before the HLC.
//!
//! The HLC is written by hand rather than taken from a crate: the ones published (e.g. `uhlc`)
//! read the system clock themselves, while merges must be reproducible from their inputs alone,
//! so our clock takes the physical time as an argument.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

/// Trailer names used in commit messages.
pub const TRAILER_NODE: &str = "Gitdb-Node";
pub const TRAILER_CLOCK: &str = "Gitdb-Clock";
pub const TRAILER_HLC: &str = "Gitdb-Hlc";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    #[error("invalid node id {0:?}: use 1 to 64 characters from A-Z a-z 0-9 . _ -")]
    InvalidNodeId(String),
    #[error("invalid vector clock {0:?}")]
    InvalidClock(String),
    #[error("invalid hybrid timestamp {0:?}")]
    InvalidHlc(String),
}

/// A node's name: author of its commits and its slot in vector clocks.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(String);

impl NodeId {
    pub fn new(s: &str) -> Result<NodeId, ClockError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if ok {
            Ok(NodeId(s.to_owned()))
        } else {
            Err(ClockError::InvalidNodeId(s.to_owned()))
        }
    }

    /// A valid node id derived from any string (e.g. a hostname): invalid characters become `-`.
    pub fn sanitized(s: &str) -> NodeId {
        let mut out: String = s
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .take(64)
            .collect();
        if out.is_empty() {
            out.push_str("node");
        }
        NodeId(out)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.0)
    }
}

/// How two vector clocks relate. Equal and Concurrent are different answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockOrdering {
    Before,
    After,
    Equal,
    Concurrent,
}

/// node → number of local commits that node has made (as far as this clock knows).
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct VectorClock(BTreeMap<NodeId, u64>);

impl VectorClock {
    pub fn new() -> VectorClock {
        VectorClock::default()
    }

    pub fn get(&self, node: &NodeId) -> u64 {
        self.0.get(node).copied().unwrap_or(0)
    }

    /// Counts one more local event of `node`.
    pub fn increment(&mut self, node: &NodeId) {
        *self.0.entry(node.clone()).or_insert(0) += 1;
    }

    /// Element-wise maximum.
    pub fn merge(&mut self, other: &VectorClock) {
        // Zero entries are never stored, so equal clocks are equal maps.
        for (node, &n) in other.0.iter().filter(|(_, n)| **n > 0) {
            let mine = self.0.entry(node.clone()).or_insert(0);
            *mine = (*mine).max(n);
        }
    }

    pub fn compare(&self, other: &VectorClock) -> ClockOrdering {
        let mut less = false;
        let mut greater = false;
        for node in self.0.keys().chain(other.0.keys()) {
            match self.get(node).cmp(&other.get(node)) {
                Ordering::Less => less = true,
                Ordering::Greater => greater = true,
                Ordering::Equal => {}
            }
        }
        match (less, greater) {
            (false, false) => ClockOrdering::Equal,
            (true, false) => ClockOrdering::Before,
            (false, true) => ClockOrdering::After,
            (true, true) => ClockOrdering::Concurrent,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&NodeId, u64)> {
        self.0.iter().map(|(k, v)| (k, *v))
    }

    pub fn is_empty(&self) -> bool {
        self.0.values().all(|&n| n == 0)
    }

    /// Parses the trailer form `a=1 b=2` (empty string: empty clock).
    pub fn parse(s: &str) -> Result<VectorClock, ClockError> {
        let mut map = BTreeMap::new();
        for part in s.split_whitespace() {
            let (node, n) = part
                .split_once('=')
                .ok_or_else(|| ClockError::InvalidClock(s.to_owned()))?;
            let node = NodeId::new(node).map_err(|_| ClockError::InvalidClock(s.to_owned()))?;
            let n: u64 = n
                .parse()
                .map_err(|_| ClockError::InvalidClock(s.to_owned()))?;
            if n > 0 {
                map.insert(node, n);
            }
        }
        Ok(VectorClock(map))
    }
}

/// A clock from (node, count) pairs; zero counts are dropped, a repeated node keeps its max.
impl FromIterator<(NodeId, u64)> for VectorClock {
    fn from_iter<I: IntoIterator<Item = (NodeId, u64)>>(iter: I) -> VectorClock {
        let mut map = BTreeMap::new();
        for (node, n) in iter.into_iter().filter(|(_, n)| *n > 0) {
            let mine = map.entry(node).or_insert(0);
            *mine = n.max(*mine);
        }
        VectorClock(map)
    }
}

/// The trailer form: `a=1 b=2`, nodes in sorted order so equal clocks print identically.
impl fmt::Display for VectorClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (node, n) in &self.0 {
            if *n == 0 {
                continue;
            }
            if !first {
                f.write_str(" ")?;
            }
            write!(f, "{node}={n}")?;
            first = false;
        }
        Ok(())
    }
}

impl fmt::Debug for VectorClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VectorClock({self})")
    }
}

/// How far ahead of the local wall clock a timestamp read from a commit may move the local HLC
/// (60 s). NTP keeps healthy clocks within milliseconds and a VM resumed from a pause is seconds
/// off, so honest skew stays well inside a minute; a minute is also small enough that the commit
/// times git shows for this node's writes stay believable. A peer further ahead is logged by
/// gossip (see `gossip::skew`); its commits are still taken (nothing is lost, and every node
/// orders them alike), only our clock does not follow it.
pub const MAX_CLOCK_SKEW_MS: u64 = 60_000;

/// A hybrid logical timestamp: physical milliseconds since the Unix epoch, then a counter that
/// orders events within one millisecond (or while the physical clock lags what we have seen).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hlc {
    pub millis: u64,
    pub counter: u32,
}

impl Hlc {
    /// The next timestamp after `self` given the physical time `now_ms`: strictly greater than
    /// `self`, and at least `now_ms`.
    pub fn tick(self, now_ms: u64) -> Hlc {
        if now_ms > self.millis {
            Hlc {
                millis: now_ms,
                counter: 0,
            }
        } else {
            self.after()
        }
    }

    /// The next timestamp after both `self` and a `seen` one (receive event).
    pub fn observe(self, seen: Hlc, now_ms: u64) -> Hlc {
        self.max(seen).tick(now_ms)
    }

    /// This clock after reading `seen` from a commit at local wall time `now_ms`: the later of
    /// the two, except that `seen` counts for no more than `now_ms + MAX_CLOCK_SKEW_MS` (see the
    /// module docs). Never earlier than `self`. The second value tells whether `seen` was cut.
    pub fn adopt(self, seen: Hlc, now_ms: u64) -> (Hlc, bool) {
        let limit = Hlc {
            millis: now_ms.saturating_add(MAX_CLOCK_SKEW_MS),
            counter: 0,
        };
        let bounded = seen > limit;
        (self.max(seen.min(limit)), bounded)
    }

    fn after(self) -> Hlc {
        match self.counter.checked_add(1) {
            Some(counter) => Hlc {
                millis: self.millis,
                counter,
            },
            None => Hlc {
                millis: self.millis + 1,
                counter: 0,
            },
        }
    }

    pub fn parse(s: &str) -> Result<Hlc, ClockError> {
        let bad = || ClockError::InvalidHlc(s.to_owned());
        let (ms, c) = s.trim().split_once('.').ok_or_else(bad)?;
        Ok(Hlc {
            millis: ms.parse().map_err(|_| bad())?,
            counter: c.parse().map_err(|_| bad())?,
        })
    }

    /// Whole seconds, for git's author/committer time.
    pub fn seconds(&self) -> i64 {
        (self.millis / 1000) as i64
    }
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.millis, self.counter)
    }
}

impl fmt::Debug for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hlc({self})")
    }
}

/// The gitdb metadata of one commit, as read from (or written to) its trailers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitStamp {
    pub node: Option<NodeId>,
    pub clock: VectorClock,
    pub hlc: Option<Hlc>,
}

impl CommitStamp {
    /// The trailer block, to append after a blank line.
    pub fn trailers(&self) -> String {
        let mut out = String::new();
        if let Some(node) = &self.node {
            out.push_str(&format!("{TRAILER_NODE}: {node}\n"));
        }
        out.push_str(&format!("{TRAILER_CLOCK}: {}\n", self.clock));
        if let Some(hlc) = &self.hlc {
            out.push_str(&format!("{TRAILER_HLC}: {hlc}\n"));
        }
        out
    }

    /// Reads the stamp from a commit message's last paragraph; a commit made by stock git has
    /// none and gives the default (empty clock, no HLC). Malformed trailers are ignored rather
    /// than failing: a peer's or a user's odd commit must not make history unreadable.
    pub fn from_message(message: &str) -> CommitStamp {
        let mut stamp = CommitStamp::default();
        let last_paragraph = message.trim_end().rsplit("\n\n").next().unwrap_or("");
        for line in last_paragraph.lines() {
            let Some((token, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match token.trim() {
                TRAILER_NODE => stamp.node = NodeId::new(value).ok(),
                TRAILER_CLOCK => stamp.clock = VectorClock::parse(value).unwrap_or_default(),
                TRAILER_HLC => stamp.hlc = Hlc::parse(value).ok(),
                _ => {}
            }
        }
        stamp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn n(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    #[test]
    fn compare_distinguishes_equal_from_concurrent() {
        let mut a = VectorClock::new();
        let mut b = VectorClock::new();
        assert_eq!(a.compare(&b), ClockOrdering::Equal);
        a.increment(&n("a"));
        assert_eq!(a.compare(&b), ClockOrdering::After);
        assert_eq!(b.compare(&a), ClockOrdering::Before);
        b.increment(&n("b"));
        assert_eq!(a.compare(&b), ClockOrdering::Concurrent);
        let mut m = a.clone();
        m.merge(&b);
        assert_eq!(m.compare(&a), ClockOrdering::After);
        assert_eq!(m.compare(&b), ClockOrdering::After);
        assert_eq!(m.to_string(), "a=1 b=1");
    }

    #[test]
    fn clock_text_round_trips_and_rejects_garbage() {
        let c = VectorClock::parse("b=2 a=10").unwrap();
        assert_eq!(c.to_string(), "a=10 b=2");
        assert_eq!(VectorClock::parse(&c.to_string()).unwrap(), c);
        assert!(VectorClock::parse("a=").is_err());
        assert!(VectorClock::parse("a b").is_err());
        assert!(VectorClock::parse("a=1 b c=2").is_err());
        assert_eq!(VectorClock::parse("").unwrap(), VectorClock::new());
    }

    #[test]
    fn zero_entries_do_not_change_equality() {
        let mut a = VectorClock::parse("a=1").unwrap();
        a.merge(&VectorClock::parse("b=0").unwrap());
        assert_eq!(a.to_string(), "a=1");
        assert_eq!(a, VectorClock::parse("a=1 c=0").unwrap());
        assert_eq!(
            a.compare(&VectorClock::parse("a=1").unwrap()),
            ClockOrdering::Equal
        );
    }

    #[test]
    fn hlc_never_goes_backwards() {
        let t = Hlc::default().tick(1000);
        assert_eq!(
            t,
            Hlc {
                millis: 1000,
                counter: 0
            }
        );
        let t2 = t.tick(900);
        assert_eq!(
            t2,
            Hlc {
                millis: 1000,
                counter: 1
            }
        );
        let t3 = t2.observe(
            Hlc {
                millis: 5000,
                counter: 7,
            },
            1200,
        );
        assert_eq!(
            t3,
            Hlc {
                millis: 5000,
                counter: 8
            }
        );
        assert_eq!(Hlc::parse(&t3.to_string()).unwrap(), t3);
        assert!(Hlc::parse("12").is_err());
    }

    #[test]
    fn adopting_a_far_future_stamp_moves_the_clock_only_to_the_skew_bound() {
        let now = 1_000_000;
        let mine = Hlc {
            millis: now,
            counter: 3,
        };
        // Within the bound: taken as it is.
        let near = Hlc {
            millis: now + 5_000,
            counter: 9,
        };
        assert_eq!(mine.adopt(near, now), (near, false));
        // An hour ahead: our clock follows only to the bound, and says so.
        let hour = Hlc {
            millis: now + 3_600_000,
            counter: 0,
        };
        let (bounded, cut) = mine.adopt(hour, now);
        assert!(cut);
        assert_eq!(
            bounded,
            Hlc {
                millis: now + MAX_CLOCK_SKEW_MS,
                counter: 0
            }
        );
        // The next local event is still after everything the clock holds.
        assert!(bounded.tick(now + 1) > bounded);
        // Never backwards: a clock already past the bound (our wall clock stepped back) stays.
        let ahead = Hlc {
            millis: now + 2 * MAX_CLOCK_SKEW_MS,
            counter: 1,
        };
        assert_eq!(ahead.adopt(hour, now).0, ahead);
        // An older stamp changes nothing.
        assert_eq!(mine.adopt(Hlc::default(), now), (mine, false));
        assert_eq!(
            Hlc::default()
                .adopt(
                    Hlc {
                        millis: u64::MAX,
                        counter: u32::MAX
                    },
                    u64::MAX
                )
                .0
                .millis,
            u64::MAX
        );
    }

    #[test]
    fn stamp_round_trips_through_a_message() {
        let stamp = CommitStamp {
            node: Some(n("node-a")),
            clock: VectorClock::parse("node-a=3 node-b=5").unwrap(),
            hlc: Some(Hlc {
                millis: 1764163200123,
                counter: 2,
            }),
        };
        let msg = format!("set things\n\nmore words\n\n{}", stamp.trailers());
        assert_eq!(CommitStamp::from_message(&msg), stamp);
        assert_eq!(
            CommitStamp::from_message("plain git commit\n"),
            CommitStamp::default()
        );
    }

    #[test]
    fn node_ids() {
        assert!(NodeId::new("host-1.example_x").is_ok());
        assert!(NodeId::new("").is_err());
        assert!(NodeId::new("a b").is_err());
        assert!(NodeId::new(&"x".repeat(65)).is_err());
        assert_eq!(NodeId::sanitized("my host!").as_str(), "my-host-");
    }

    fn clock() -> impl Strategy<Value = VectorClock> {
        proptest::collection::btree_map("[abc]", 0u64..4, 0..3).prop_map(|m| {
            let mut c = VectorClock::new();
            for (k, v) in m.into_iter().filter(|(_, v)| *v > 0) {
                c.0.insert(n(&k), v);
            }
            c
        })
    }

    proptest! {
        #[test]
        fn merge_is_commutative_idempotent_and_an_upper_bound(a in clock(), b in clock()) {
            let mut ab = a.clone(); ab.merge(&b);
            let mut ba = b.clone(); ba.merge(&a);
            prop_assert_eq!(ab.compare(&ba), ClockOrdering::Equal);
            prop_assert_eq!(&ab, &ba);
            prop_assert_eq!(VectorClock::parse(&ab.to_string()).unwrap(), ab.clone());
            let mut aa = a.clone(); aa.merge(&a);
            prop_assert_eq!(aa.compare(&a), ClockOrdering::Equal);
            prop_assert!(matches!(ab.compare(&a), ClockOrdering::After | ClockOrdering::Equal));
            prop_assert!(matches!(ab.compare(&b), ClockOrdering::After | ClockOrdering::Equal));
        }

        #[test]
        fn compare_is_antisymmetric(a in clock(), b in clock()) {
            let flipped = match a.compare(&b) {
                ClockOrdering::Before => ClockOrdering::After,
                ClockOrdering::After => ClockOrdering::Before,
                o => o,
            };
            prop_assert_eq!(b.compare(&a), flipped);
        }
    }
}
