//! Backoff by source: a peer whose exchange failed, or which sent objects we refused, is not
//! pulled from again for the same doubling backoff as a dialed peer (`peers.rs`), however it
//! reaches us — in particular when it dials *us*, which the peer table (keyed by the
//! addresses we dial) never sees: without this, a peer connecting to us in a loop could make
//! us pull and refuse its objects as fast as it reconnects.
//!
//! **What identifies a peer.** The handshake (`NNpsk0`) proves only that the other side holds
//! the cluster key: the node id and listen address of its announce are claims any key holder
//! can make, so keyed by either alone a hostile peer could hold off a good one by naming it
//! (and escape its own backoff by naming itself anew each time). The one thing a connection
//! shows that the peer cannot choose freely is the address it comes from (TCP's handshake
//! needs the peer to receive at it). An address alone is weak the other way: behind NAT many
//! nodes share one, and one hostile node would hold off all of them. So the key is both: the
//! *source* (the IPv4 address; for IPv6 the /64, since one host holds a whole /64) and the node
//! id claimed from it. A hostile peer can then hold off only a peer that shares its source
//! *and* whose node id it claims; naming itself anew each time buys it nothing beyond
//! [`MAX_IDS_PER_SOURCE`] ids — past that the source's other ids share one backoff of their
//! own (doubling like any other), which spares the ids that brought us good objects from that
//! source before (a NAT-mate of the hostile peer that gave us data keeps being pulled from).
//!
//! **What clears it.** An exchange in which we pulled the peer's head and it checked out. One
//! in which we pulled nothing proves nothing about the peer's objects (any peer can announce a
//! head we hold): it lets the time run out, but the count of failures stays, so alternating
//! hostile and empty exchanges does not reset the doubling.
//!
//! **Where it applies.** Exchanges of both directions book their outcome here (a peer we dialed
//! that failed after its announce is held off when it dials us too); only inbound exchanges are
//! gated by it: while held off, the peer gets our announce without `wants_yours` and we pull
//! nothing (it may still pull from us, which any key holder can make us do anyway, and which a
//! good peer wrongly held off still needs). Dialing stays governed by the peer table, whose
//! rule for a node cut off from every peer must not wait out this backoff too.
//!
//! Bounds: at most [`MAX_SOURCES`] sources, each with [`MAX_IDS_PER_SOURCE`] failing ids and
//! [`MAX_GOOD_PER_SOURCE`] good ones; when full, sources holding nobody off are dropped.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::peers::backoff;

/// Most sources remembered.
pub const MAX_SOURCES: usize = 1024;
/// Node ids of one source with a backoff of their own; further ids share one.
pub const MAX_IDS_PER_SOURCE: usize = 8;
/// Node ids of one source remembered as having brought good objects.
pub const MAX_GOOD_PER_SOURCE: usize = 16;

#[derive(Debug, Clone, Copy)]
struct Backoff {
    failures: u32,
    retry_at: Instant,
}

impl Backoff {
    fn left(&self, now: Instant) -> Option<Duration> {
        (self.retry_at > now).then(|| self.retry_at - now)
    }
}

#[derive(Debug, Default)]
struct Source {
    /// Node ids whose last exchange from here failed, each with its own backoff.
    failing: HashMap<String, Backoff>,
    /// Node ids that brought good objects from here since they last failed.
    good: HashSet<String>,
    /// The backoff of every other id from here, once [`MAX_IDS_PER_SOURCE`] are failing.
    others: Option<Backoff>,
}

impl Source {
    fn holds_anyone(&self, now: Instant) -> bool {
        self.failing.values().any(|b| b.retry_at > now)
            || self.others.is_some_and(|b| b.retry_at > now)
    }
}

/// The source of a connection from `ip` (see the module docs).
pub fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut o = v6.octets();
                o[8..].fill(0);
                IpAddr::V6(o.into())
            }
        },
    }
}

/// The backoff of peers by (source, node id); see the module docs.
#[derive(Debug)]
pub struct SourceTable {
    sources: HashMap<IpAddr, Source>,
    interval: Duration,
}

impl SourceTable {
    pub fn new(interval: Duration) -> SourceTable {
        SourceTable {
            sources: HashMap::new(),
            interval,
        }
    }

    /// How long `node` connecting from `ip` is still held off, if it is.
    pub fn held_off(&self, ip: IpAddr, node: &str, now: Instant) -> Option<Duration> {
        let s = self.sources.get(&source_of(ip))?;
        match s.failing.get(node) {
            // Its own record decides, whatever the source's other ids did.
            Some(b) => b.left(now),
            None if s.good.contains(node) => None,
            None => s.others.and_then(|b| b.left(now)),
        }
    }

    /// Books a failed exchange with `node` from `ip`; the backoff now in force on it (zero if
    /// the table is full of sources that all hold someone off).
    pub fn failed(&mut self, ip: IpAddr, node: &str, now: Instant) -> Duration {
        let interval = self.interval;
        let Some(s) = self.source(source_of(ip), now) else {
            return Duration::ZERO;
        };
        s.good.remove(node);
        let b = if s.failing.contains_key(node) || s.failing.len() < MAX_IDS_PER_SOURCE {
            s.failing.entry(node.to_owned()).or_insert(Backoff {
                failures: 0,
                retry_at: now,
            })
        } else {
            s.others.get_or_insert(Backoff {
                failures: 0,
                retry_at: now,
            })
        };
        b.failures = b.failures.saturating_add(1);
        let d = backoff(interval, b.failures);
        b.retry_at = now + d;
        d
    }

    /// Books an exchange in which we pulled `node`'s head from `ip` and took it: its backoff
    /// is cleared, and it is spared the backoff of its source's other ids from now on.
    pub fn pulled(&mut self, ip: IpAddr, node: &str, now: Instant) {
        let Some(s) = self.source(source_of(ip), now) else {
            return;
        };
        s.failing.remove(node);
        if s.good.len() < MAX_GOOD_PER_SOURCE {
            s.good.insert(node.to_owned());
        }
    }

    /// (source, node id) pairs held off now, counting a source's shared backoff as one.
    #[cfg(test)]
    fn held(&self, now: Instant) -> usize {
        self.sources
            .values()
            .map(|s| {
                s.failing.values().filter(|b| b.retry_at > now).count()
                    + usize::from(s.others.is_some_and(|b| b.retry_at > now))
            })
            .sum()
    }

    /// The record of `src`, made if there is room (see the module docs).
    fn source(&mut self, src: IpAddr, now: Instant) -> Option<&mut Source> {
        if !self.sources.contains_key(&src) && self.sources.len() >= MAX_SOURCES {
            self.sources.retain(|_, s| s.holds_anyone(now));
            if self.sources.len() >= MAX_SOURCES {
                return None;
            }
        }
        Some(self.sources.entry(src).or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const I: Duration = Duration::from_secs(1);

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_failing_peer_is_held_off_with_a_doubling_backoff_that_only_a_pull_clears() {
        let now = Instant::now();
        let mut t = SourceTable::new(I);
        let a = ip("10.0.0.1");
        assert_eq!(t.held_off(a, "evil", now), None);
        assert_eq!(t.failed(a, "evil", now), 2 * I);
        assert_eq!(t.held_off(a, "evil", now), Some(2 * I));
        assert_eq!(t.failed(a, "evil", now), 4 * I);
        assert_eq!(t.held(now), 1);
        // Once the time ran out it is pulled from again; an empty exchange keeps the count.
        let later = now + 5 * I;
        assert_eq!(t.held_off(a, "evil", later), None);
        assert_eq!(t.failed(a, "evil", later), 8 * I);
        for _ in 0..20 {
            t.failed(a, "evil", later);
        }
        assert_eq!(
            t.held_off(a, "evil", later),
            Some(super::super::peers::MAX_BACKOFF)
        );
        // A good pull clears it.
        t.pulled(a, "evil", later);
        assert_eq!(t.held_off(a, "evil", later), None);
        assert_eq!(t.failed(a, "evil", later), 2 * I);
    }

    #[test]
    fn claiming_a_good_peers_id_from_another_source_holds_off_only_the_claimant() {
        let now = Instant::now();
        let mut t = SourceTable::new(I);
        let (evil, good) = (ip("10.0.0.2"), ip("10.0.0.1"));
        t.failed(evil, "good", now);
        assert!(t.held_off(evil, "good", now).is_some());
        assert_eq!(
            t.held_off(good, "good", now),
            None,
            "the good peer's source"
        );
        // Behind one NAT, another id from the hostile source is not held off either.
        assert_eq!(t.held_off(evil, "neighbour", now), None);
        // IPv6: one host holds a /64, so the /64 is the source; a v4-mapped address is v4.
        let v6 = ip("2001:db8::1");
        t.failed(v6, "x", now);
        assert!(t.held_off(ip("2001:db8::ffff:1"), "x", now).is_some());
        assert_eq!(t.held_off(ip("2001:db8:0:1::1"), "x", now), None);
        assert!(t.held_off(ip("::ffff:10.0.0.2"), "good", now).is_some());
    }

    #[test]
    fn new_ids_from_one_source_share_a_doubling_backoff_that_spares_its_good_ids() {
        let now = Instant::now();
        let mut t = SourceTable::new(I);
        let a = ip("10.0.0.1");
        t.pulled(a, "neighbour", now);
        for i in 0..MAX_IDS_PER_SOURCE {
            assert_eq!(t.failed(a, &format!("id{i}"), now), 2 * I);
        }
        // Not yet: the first ids each have their own backoff, a new id is free.
        assert_eq!(t.held_off(a, "fresh", now), None);
        assert_eq!(t.failed(a, "fresh", now), 2 * I);
        assert_eq!(t.held_off(a, "fresh2", now), Some(2 * I));
        assert_eq!(t.failed(a, "fresh3", now), 4 * I, "shared, and doubling");
        assert_eq!(t.held(now), MAX_IDS_PER_SOURCE + 1);
        // The source's good id and the other sources are spared.
        assert_eq!(t.held_off(a, "neighbour", now), None);
        assert_eq!(t.held_off(ip("10.0.0.9"), "fresh2", now), None);
        // A good id that fails loses its exemption.
        t.failed(a, "neighbour", now);
        assert!(t.held_off(a, "neighbour", now).is_some());
    }

    #[test]
    fn the_table_is_bounded_and_drops_sources_that_hold_nobody_off() {
        let now = Instant::now();
        let mut t = SourceTable::new(I);
        for i in 0..MAX_SOURCES {
            let a = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i as u32));
            t.failed(a, "n", now);
        }
        // Full of sources holding someone off: a new one is not tracked.
        assert_eq!(t.failed(ip("192.168.0.1"), "n", now), Duration::ZERO);
        assert_eq!(t.held_off(ip("192.168.0.1"), "n", now), None);
        // Once their backoffs ran out they make room.
        let later = now + 3 * I;
        assert_eq!(t.failed(ip("192.168.0.1"), "n", later), 2 * I);
        assert_eq!(t.sources.len(), 1);
        for i in 0..100 {
            t.pulled(ip("192.168.0.1"), &format!("g{i}"), later);
        }
        assert_eq!(
            t.sources[&ip("192.168.0.1")].good.len(),
            MAX_GOOD_PER_SOURCE
        );
    }
}
