//! The peer table: every peer this node knows, what it last said, and when to try it again.
//!
//! Peers come from the command line (seeds, never forgotten) and from announces (a bounded
//! sample each, so the table grows by gossip, not by one peer telling of thousands). Each good
//! exchange is a heartbeat: a peer is alive while its last contact is recent (a few gossip
//! intervals, as Cassandra judges liveness). A failed exchange doubles the peer's backoff up to
//! [`MAX_BACKOFF`]; a learned peer that keeps failing is forgotten, a seed is retried forever.
//!
//! Backoff spares a cluster the cost of a dead peer. When the last exchange with *every* peer
//! failed, the likelier cause is our own network (a pulled cable, a partition, a cluster still
//! booting), and retrying costs only us: the seeds are then tried every round regardless of
//! their backoff, so a node cut off rejoins within an interval of the heal instead of after the
//! backoff it built up (up to 30 s, whatever the interval).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::seq::IndexedRandom;

use crate::db::{ObjectId, PeerStatus};

/// Most peers kept; learned peers beyond it are not added.
pub const MAX_PEERS: usize = 1024;
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A learned peer is forgotten after this many failures in a row.
const FORGET_AFTER: u32 = 8;

/// The backoff after `failures` failures in a row: interval × 2^failures, at most
/// [`MAX_BACKOFF`] (shared with the backoff of peers by source, `sources.rs`).
pub(super) fn backoff(interval: Duration, failures: u32) -> Duration {
    interval
        .saturating_mul(1 << failures.min(16))
        .min(MAX_BACKOFF)
}

#[derive(Debug, Clone)]
pub struct Peer {
    pub seed: bool,
    pub node: Option<String>,
    pub head: Option<ObjectId>,
    pub last_contact: Option<Instant>,
    pub failures: u32,
    pub retry_at: Option<Instant>,
}

#[derive(Debug)]
pub struct PeerTable {
    peers: BTreeMap<String, Peer>,
    /// Addresses that turned out to be this node itself.
    me: Vec<String>,
    /// Silence longer than this makes a peer dead.
    dead_after: Duration,
    interval: Duration,
}

impl PeerTable {
    pub fn new(seeds: &[String], interval: Duration) -> PeerTable {
        let mut t = PeerTable {
            peers: BTreeMap::new(),
            me: Vec::new(),
            dead_after: (interval * 5).max(Duration::from_secs(5)),
            interval,
        };
        for s in seeds {
            t.peers.insert(
                s.clone(),
                Peer {
                    seed: true,
                    node: None,
                    head: None,
                    last_contact: None,
                    failures: 0,
                    retry_at: None,
                },
            );
        }
        t
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Adds a peer heard of in an announce (or one that dialed us).
    pub fn learn(&mut self, addr: &str) {
        if self.me.iter().any(|m| m == addr)
            || self.peers.contains_key(addr)
            || self.peers.len() >= MAX_PEERS
        {
            return;
        }
        self.peers.insert(
            addr.to_owned(),
            Peer {
                seed: false,
                node: None,
                head: None,
                last_contact: None,
                failures: 0,
                retry_at: None,
            },
        );
    }

    /// `addr` is this node: never dial it again.
    pub fn is_me(&mut self, addr: &str) {
        self.peers.remove(addr);
        if !self.me.iter().any(|m| m == addr) {
            self.me.push(addr.to_owned());
        }
    }

    pub fn contact_ok(&mut self, addr: &str, node: &str, head: Option<ObjectId>, now: Instant) {
        self.learn(addr);
        if let Some(p) = self.peers.get_mut(addr) {
            p.node = Some(node.to_owned());
            p.head = head;
            p.last_contact = Some(now);
            p.failures = 0;
            p.retry_at = None;
        }
    }

    /// Records a failed exchange; returns the backoff now in force.
    pub fn contact_failed(&mut self, addr: &str, now: Instant) -> Duration {
        let Some(p) = self.peers.get_mut(addr) else {
            return Duration::ZERO;
        };
        p.failures = p.failures.saturating_add(1);
        if !p.seed && p.failures >= FORGET_AFTER {
            self.peers.remove(addr);
            return MAX_BACKOFF;
        }
        let backoff = backoff(self.interval, p.failures);
        p.retry_at = Some(now + backoff);
        backoff
    }

    fn due(p: &Peer, now: Instant) -> bool {
        p.retry_at.is_none_or(|t| t <= now)
    }

    /// Whether the last exchange with every peer failed (see the module docs).
    fn cut_off(&self) -> bool {
        !self.peers.is_empty() && self.peers.values().all(|p| p.failures > 0)
    }

    fn alive(&self, p: &Peer, now: Instant) -> bool {
        p.last_contact
            .is_some_and(|t| now.saturating_duration_since(t) < self.dead_after)
    }

    /// Up to `k` peers to gossip with now, chosen at random (reproducibly for one `seed`) among
    /// those not backing off (`ignore_backoff`: all, for a `sync` a user asked for; seeds, too,
    /// when every peer's last exchange failed: see the module docs). Peers not
    /// known to be at `head` come first: a peer whose last announce named our head has nothing
    /// to give or take, and skipping it is what keeps a push from missing the one node that
    /// still lacks the news (with blind random choice about every other round of 16 nodes
    /// left one node to the next timer tick).
    pub fn select_gossip_peers(
        &self,
        k: usize,
        seed: u64,
        now: Instant,
        ignore_backoff: bool,
        head: Option<ObjectId>,
    ) -> Vec<String> {
        let cut_off = self.cut_off();
        let due: Vec<(&String, &Peer)> = self
            .peers
            .iter()
            .filter(|(_, p)| ignore_backoff || Self::due(p, now) || (cut_off && p.seed))
            .collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let (behind, level): (Vec<_>, Vec<_>) = due
            .into_iter()
            .partition(|(_, p)| head.is_none() || p.head != head);
        let mut out: Vec<String> = behind
            .choose_multiple(&mut rng, k)
            .map(|(a, _)| (*a).clone())
            .collect();
        if out.len() < k {
            out.extend(
                level
                    .choose_multiple(&mut rng, k - out.len())
                    .map(|(a, _)| (*a).clone()),
            );
        }
        out
    }

    /// Up to `n` live peers to tell others about (random for one `seed`).
    pub fn sample(&self, n: usize, seed: u64, now: Instant) -> Vec<String> {
        let live: Vec<&String> = self
            .peers
            .iter()
            .filter(|(_, p)| self.alive(p, now))
            .map(|(a, _)| a)
            .collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        live.choose_multiple(&mut rng, n)
            .map(|a| (*a).clone())
            .collect()
    }

    /// Heads peers announced, to offer as haves when pulling.
    pub fn known_heads(&self) -> Vec<ObjectId> {
        let mut heads: Vec<ObjectId> = self.peers.values().filter_map(|p| p.head).collect();
        heads.sort();
        heads.dedup();
        heads
    }

    pub fn status(&self, now: Instant) -> Vec<PeerStatus> {
        self.peers
            .iter()
            .map(|(addr, p)| PeerStatus {
                addr: addr.clone(),
                node: p.node.clone(),
                head: p.head.map(|h| h.to_string()),
                last_contact_ms: p
                    .last_contact
                    .map(|t| now.saturating_duration_since(t).as_millis() as u64),
                failures: p.failures,
                backoff_ms: p
                    .retry_at
                    .map_or(0, |t| t.saturating_duration_since(now).as_millis() as u64),
                alive: self.alive(p, now),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_learned_peers_are_forgotten() {
        let now = Instant::now();
        let mut t = PeerTable::new(&["s:1".into()], Duration::from_secs(1));
        t.learn("l:1");
        assert_eq!(t.contact_failed("s:1", now), Duration::from_secs(2));
        assert_eq!(t.contact_failed("s:1", now), Duration::from_secs(4));
        assert_eq!(
            t.select_gossip_peers(5, 1, now, false, None),
            vec!["l:1".to_string()]
        );
        assert_eq!(t.select_gossip_peers(5, 1, now, true, None).len(), 2);
        for _ in 0..20 {
            t.contact_failed("s:1", now);
            t.contact_failed("l:1", now);
        }
        assert_eq!(t.len(), 1, "the learned peer is forgotten, the seed kept");
        let s = &t.status(now)[0];
        assert_eq!(s.backoff_ms, MAX_BACKOFF.as_millis() as u64);
        t.contact_ok("s:1", "n", None, now);
        let s = &t.status(now)[0];
        assert!(s.alive && s.failures == 0 && s.backoff_ms == 0);
    }

    #[test]
    fn a_node_whose_every_peer_failed_tries_its_seeds_every_round() {
        let now = Instant::now();
        let mut t = PeerTable::new(&["s:1".into(), "s:2".into()], Duration::from_secs(1));
        t.learn("l:1");
        t.contact_ok("l:1", "l", None, now);
        t.contact_failed("s:1", now);
        t.contact_failed("s:2", now);
        // One peer still answers: the failed seeds wait out their backoff.
        assert_eq!(t.select_gossip_peers(5, 1, now, false, None), vec!["l:1"]);
        // Every peer's last exchange failed: the seeds are due at once, the learned peer not.
        t.contact_failed("l:1", now);
        for _ in 0..10 {
            t.contact_failed("s:1", now);
        }
        let mut chosen = t.select_gossip_peers(5, 1, now, false, None);
        chosen.sort();
        assert_eq!(chosen, vec!["s:1", "s:2"]);
        // One answer ends it: the other seed waits out its backoff again.
        t.contact_ok("s:2", "s", None, now);
        assert_eq!(t.select_gossip_peers(5, 1, now, false, None), vec!["s:2"]);
    }

    #[test]
    fn selection_is_bounded_random_and_never_self() {
        let now = Instant::now();
        let mut t = PeerTable::new(&[], Duration::from_secs(1));
        for i in 0..10 {
            t.learn(&format!("p:{i}"));
        }
        t.is_me("p:3");
        t.learn("p:3");
        let a = t.select_gossip_peers(3, 7, now, false, None);
        assert_eq!(a.len(), 3);
        assert_eq!(
            a,
            t.select_gossip_peers(3, 7, now, false, None),
            "one seed, one choice"
        );
        assert!(!a.contains(&"p:3".to_string()));
        let mut seen = std::collections::HashSet::new();
        for seed in 0..50 {
            seen.extend(t.select_gossip_peers(3, seed, now, false, None));
        }
        assert_eq!(seen.len(), 9, "every peer gets chosen some time");
        // Peers known to be at our head come last.
        let h = ObjectId::null(gix::hash::Kind::Sha1);
        for i in 0..10 {
            if i != 5 {
                t.contact_ok(&format!("p:{i}"), "n", Some(h), now);
            }
        }
        for seed in 0..20 {
            let chosen = t.select_gossip_peers(1, seed, now, false, Some(h));
            assert_eq!(
                chosen,
                vec!["p:5".to_string()],
                "the one peer not at our head"
            );
        }
        for i in 0..2000 {
            t.learn(&format!("q:{i}"));
        }
        assert_eq!(t.len(), MAX_PEERS);
    }
}
