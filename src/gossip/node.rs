//! The state every task of one gossip service shares ([`Node`]), and what it does with it: our
//! announce, which heads to pull and merge, booking each exchange's result in the peer table,
//! one exchange per peer at a time, and a round with `fanout` peers. Apart from the runtime
//! and its tasks (`service.rs`) and from accepting peers (`listener.rs`), because this is
//! what every exchange, inbound or dialed, reports to, and what the db's [`Replicator`] hook
//! (`sync`, `status`) asks.
//!
//! Locks: `peers`, `sources`, `pulling`, `last_error` and `in_flight` are std mutexes taken
//! briefly, never across an await or a db call; `merging` (tokio) serializes merges, and is
//! held across one.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::connection::Connection;
use super::exchange::{self, ExchangeError, Outcome};
use super::message::{Announce, MAX_PEERS_PER_ANNOUNCE, clock_to_wire, object_id, oid};
use super::peers::PeerTable;
use super::service::{GossipConfig, now_ms};
use super::skew::{self, SkewWatch};
use super::sources::SourceTable;
use crate::db::{GitDb, ObjectId, PeerStatus, Replicator};

/// Bytes on the wire, for benchmarks.
#[derive(Debug, Default)]
pub struct Counters {
    /// Rounds started (anti-entropy, after a commit, or asked for by `sync`).
    pub rounds: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    /// Of those, the deflated object batches of pulls (what a git pack would carry).
    pub object_bytes_received: AtomicU64,
}

/// The state every task of the service shares.
pub struct Node {
    pub db: Arc<GitDb>,
    pub cfg: GossipConfig,
    /// The address we listen on, as bound.
    pub local_addr: Option<SocketAddr>,
    peers: Mutex<PeerTable>,
    /// The backoff of peers by where they connect from and the node id they claim: what holds
    /// off a misbehaving peer that dials us (see `sources.rs`).
    sources: Mutex<SourceTable>,
    /// Heads some exchange is pulling now: another exchange that meets the same head leaves it.
    pulling: Mutex<HashSet<ObjectId>>,
    /// Peers an exchange is running with now, and whether another was asked for meanwhile.
    in_flight: Mutex<std::collections::HashMap<String, bool>>,
    /// Woken whenever an exchange ends (a `sync` waits on it for a running one).
    exchange_done: tokio::sync::Notify,
    pub merging: tokio::sync::Mutex<()>,
    /// (our head, their head) pairs whose merge was a no-op: not tried again until either moves.
    settled: Mutex<HashSet<(ObjectId, ObjectId)>>,
    last_error: Mutex<Option<String>>,
    /// Peers whose clocks run ahead of ours beyond the bound (logged).
    skew: SkewWatch,
    pub counters: Counters,
    handle: tokio::runtime::Handle,
    rounds: AtomicU64,
    /// This node, for the db hook (which is called with `&self`).
    me: std::sync::Weak<Node>,
}

impl Node {
    /// The shared state of a service running on `handle`, listening on `local_addr` (if any).
    pub(super) fn new(
        db: Arc<GitDb>,
        cfg: GossipConfig,
        local_addr: Option<SocketAddr>,
        handle: tokio::runtime::Handle,
    ) -> Arc<Node> {
        Arc::new_cyclic(|me| Node {
            peers: Mutex::new(PeerTable::new(&cfg.peers, cfg.interval)),
            sources: Mutex::new(SourceTable::new(cfg.interval)),
            db,
            cfg,
            local_addr,
            pulling: Mutex::new(HashSet::new()),
            in_flight: Mutex::new(std::collections::HashMap::new()),
            exchange_done: tokio::sync::Notify::new(),
            merging: tokio::sync::Mutex::new(()),
            settled: Mutex::new(HashSet::new()),
            last_error: Mutex::new(None),
            skew: SkewWatch::default(),
            counters: Counters::default(),
            handle,
            rounds: AtomicU64::new(0),
            me: me.clone(),
        })
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each of these tables is consistent after any single statement: a panic elsewhere
    // leaves nothing half-updated, so the poison carries no information.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn is_loopback_name(addr: &str) -> bool {
    use std::net::ToSocketAddrs;
    match addr.to_socket_addrs() {
        Ok(mut addrs) => addrs.all(|a| a.ip().is_loopback()),
        Err(_) => false,
    }
}

impl Node {
    pub(super) fn peer_table(&self) -> MutexGuard<'_, PeerTable> {
        lock(&self.peers)
    }

    /// Our announce. `wants_yours`: we lack the head of the announce this answers.
    pub fn announce(&self, wants_yours: bool) -> Announce {
        let now = Instant::now();
        let seed = self.rounds.fetch_add(1, Ordering::Relaxed) ^ now_ms();
        let peers = self.peer_table().sample(MAX_PEERS_PER_ANNOUNCE, seed, now);
        // Our clock as it reads now, so that a peer can tell how far our wall clock is from its.
        let hlc = skew::reading(self.db.hlc(), now_ms());
        Announce {
            node: self.db.node().to_string(),
            listen: self.announce_listen(),
            head: self.db.head().map(oid),
            clock: clock_to_wire(&self.db.clock()),
            hlc_millis: hlc.millis,
            hlc_counter: hlc.counter,
            peers,
            wants_yours,
        }
    }

    /// The listen address we announce.
    pub(super) fn announce_listen(&self) -> Option<String> {
        self.cfg
            .advertise
            .clone()
            .or_else(|| self.local_addr.map(|a| a.to_string()))
    }

    /// The head of `theirs` if we lack it and no other exchange is pulling it already (then
    /// it is ours to pull until the claim is dropped: an exchange cut at its deadline leaves
    /// the head to the next one).
    pub fn wanted(&self, theirs: &Announce) -> Option<Pulling<'_>> {
        let head = object_id(theirs.head.as_ref()?);
        if theirs.node == self.db.node().as_str() || self.db.has_object(head) {
            return None;
        }
        // Made only if the claim is ours: dropping one gives the head back.
        let claimed = lock(&self.pulling).insert(head);
        claimed.then(|| Pulling { node: self, head })
    }

    /// How long the peer claiming `node` on a connection from `from` is still held off (not
    /// pulled from), if it is; see `sources.rs`.
    pub fn held_off(&self, from: SocketAddr, node: &str) -> Option<std::time::Duration> {
        lock(&self.sources).held_off(from.ip(), node, Instant::now())
    }

    pub fn known_heads(&self) -> Vec<ObjectId> {
        self.peer_table().known_heads()
    }

    /// Where `a` listens, as we can dial it: a `0.0.0.0`/`[::]` host becomes the address the
    /// connection came from.
    fn dialable(a: &str, seen_from: SocketAddr) -> Option<String> {
        let parsed: Option<SocketAddr> = a.parse().ok();
        match parsed {
            Some(s) if s.ip().is_unspecified() => {
                Some(SocketAddr::new(seen_from.ip(), s.port()).to_string())
            }
            _ => Some(a.to_owned()),
        }
    }

    /// Whether the listen address a peer that dialed us claims is on the host it dialed from
    /// (the one thing TCP proves about it). A name or another host's address is not.
    fn claim_is_source(claimed: &str, from: SocketAddr) -> bool {
        claimed
            .parse::<SocketAddr>()
            .is_ok_and(|c| c.ip().to_canonical() == from.ip().to_canonical())
    }

    /// Books the result of an exchange with `dialed` (or an inbound one from `from`) and merges
    /// what it brought. `heard`: the node id the peer announced, if it got that far (what a
    /// failure is booked under by source, with `from`).
    pub(super) async fn finish_exchange(
        self: &Arc<Self>,
        dialed: Option<&str>,
        from: SocketAddr,
        heard: Option<String>,
        result: Result<(Announce, Outcome), ExchangeError>,
    ) -> Result<(), String> {
        let now = Instant::now();
        match result {
            Ok((theirs, outcome)) => {
                self.counters
                    .bytes_sent
                    .fetch_add(outcome.sent, Ordering::Relaxed);
                self.counters
                    .bytes_received
                    .fetch_add(outcome.received, Ordering::Relaxed);
                let addr = dialed.map(str::to_owned).or_else(|| {
                    theirs
                        .listen
                        .as_deref()
                        .and_then(|l| Self::dialable(l, from))
                });
                {
                    let mut t = self.peer_table();
                    if theirs.node == self.db.node().as_str() {
                        let ours = self.announce_listen();
                        if theirs.listen.is_some() && theirs.listen != ours {
                            // Not us under another name: another node with our id. Their
                            // commits would count on our clock entry; refuse to mix them.
                            drop(t);
                            let msg = format!(
                                "{} announces our own node id {:?}: give each node its own \
                                 --node-id",
                                addr.as_deref().unwrap_or("a peer"),
                                theirs.node
                            );
                            log::warn!("gossip: {msg}");
                            self.set_error(msg.clone());
                            return Err(msg);
                        }
                        if let Some(a) = &addr {
                            t.is_me(a);
                        }
                        return Ok(());
                    }
                    let their_hlc = crate::db::Hlc {
                        millis: theirs.hlc_millis,
                        counter: theirs.hlc_counter,
                    };
                    self.skew.check(&theirs.node, their_hlc, now_ms(), now);
                    if outcome.pulled.is_some() {
                        lock(&self.sources).pulled(from.ip(), &theirs.node, now);
                    }
                    if let Some(a) = &addr {
                        // A peer that just pulled our head has it now (peer choice goes by
                        // what peers are known to hold).
                        let head = if outcome.served {
                            self.db.head()
                        } else {
                            theirs.head.as_ref().map(object_id)
                        };
                        if dialed.is_some() || Self::claim_is_source(a, from) {
                            t.contact_ok(a, &theirs.node, head, now);
                        } else {
                            // A listen address claimed from another host proves nothing (any
                            // key holder can claim any address): learned, to be dialed and
                            // judged there, but its backoff and head stay as they were.
                            t.learn(a);
                        }
                    }
                    for p in &theirs.peers {
                        if let Some(p) = Self::dialable(p, from)
                            && self.may_dial(&p)
                        {
                            t.learn(&p);
                        }
                    }
                }
                let candidate = match outcome.pulled {
                    Some((head, _)) => {
                        // The line scripts/bench-gossip.sh follows to count hops.
                        log::debug!("gossip: got {head} from node {}", theirs.node);
                        Some(head)
                    }
                    None => theirs
                        .head
                        .as_ref()
                        .map(object_id)
                        .filter(|&h| self.db.has_object(h)),
                };
                if let Some(head) = candidate
                    && self.needs_merge(head)
                    && let Err(e) = exchange::merge(self, head, &theirs).await
                {
                    log::warn!("gossip: {e}");
                    self.set_error(e.to_string());
                    return Err(e.to_string());
                }
                Ok(())
            }
            Err(e) => {
                let who = dialed.map_or_else(|| from.to_string(), str::to_owned);
                let backoff = dialed.map(|a| self.peer_table().contact_failed(a, now));
                // Not under our own id: we never pull from a peer claiming it (see `wanted`).
                let held = heard
                    .filter(|n| n != self.db.node().as_str())
                    .map(|n| (lock(&self.sources).failed(from.ip(), &n, now), n));
                log::info!(
                    "gossip: exchange with {who} failed: {e}{}{}",
                    match backoff {
                        Some(b) => format!(" (next try in {b:?})"),
                        None => String::new(),
                    },
                    match &held {
                        Some((b, n)) if !b.is_zero() => {
                            format!(" (node {n:?} from {} not pulled from for {b:?})", from.ip())
                        }
                        _ => String::new(),
                    }
                );
                let msg = format!("{who}: {e}{}", e.io_cause());
                self.set_error(msg.clone());
                Err(msg)
            }
        }
    }

    /// Whether `head` (present here) may hold something our history lacks: not ours, not
    /// merged (or found superseded) while our head was what it is now.
    fn needs_merge(&self, head: ObjectId) -> bool {
        match self.db.head() {
            None => true,
            Some(ours) if ours == head => false,
            Some(ours) => {
                if lock(&self.settled).contains(&(ours, head)) {
                    return false;
                }
                !tokio::task::block_in_place(|| self.db.descends_from(ours, head)).unwrap_or(true)
            }
        }
    }

    /// Remembers that merging `theirs` into `ours` changed nothing.
    pub fn settle(&self, ours: ObjectId, theirs: ObjectId) {
        let mut s = lock(&self.settled);
        if s.len() >= 4096 {
            s.clear();
        }
        s.insert((ours, theirs));
    }

    fn may_dial(&self, addr: &str) -> bool {
        self.cfg.key.is_secret() || self.cfg.insecure || is_loopback_name(addr)
    }

    fn set_error(&self, e: String) {
        *lock(&self.last_error) = Some(e);
    }

    /// One exchange with the peer at `addr`. If one is running already, it is asked to run
    /// once more when done instead (it may have started before the news this one carries:
    /// skipping would leave that peer to the next timer round). `wait`: for a `sync` a user
    /// asked for, which must not return before an exchange that started after it has ended:
    /// wait for the running one to end, then run our own.
    async fn exchange_with(self: &Arc<Self>, addr: String, wait: bool) -> Result<(), String> {
        loop {
            let done = self.exchange_done.notified();
            tokio::pin!(done);
            {
                let mut running = lock(&self.in_flight);
                match running.get_mut(&addr) {
                    Some(again) if !wait => {
                        *again = true;
                        return Ok(());
                    }
                    Some(_) => {
                        // Registered before the lock is released: no wake-up is missed.
                        done.as_mut().enable();
                    }
                    None => {
                        running.insert(addr.clone(), false);
                        break;
                    }
                }
            }
            done.await;
        }
        loop {
            let r = self.exchange_inner(&addr).await;
            let mut running = lock(&self.in_flight);
            if r.is_ok() && running.get(&addr) == Some(&true) {
                running.insert(addr.clone(), false);
                continue;
            }
            running.remove(&addr);
            drop(running);
            self.exchange_done.notify_waiters();
            return r;
        }
    }

    async fn exchange_inner(self: &Arc<Self>, addr: &str) -> Result<(), String> {
        let resolved = match tokio::net::lookup_host(addr).await {
            Ok(mut a) => a.next(),
            Err(_) => None,
        };
        let Some(sock) = resolved else {
            let e = ExchangeError::Connection(super::connection::ConnectionError::Io(
                std::io::Error::new(std::io::ErrorKind::NotFound, "cannot resolve the address"),
            ));
            let nowhere = SocketAddr::from(([0, 0, 0, 0], 0));
            return self
                .finish_exchange(Some(addr), nowhere, None, Err(e))
                .await;
        };
        if Some(sock) == self.local_addr {
            self.peer_table().is_me(addr);
            return Ok(());
        }
        let mut heard = None;
        let result = exchange::within(self.cfg.deadline, async {
            let mut conn = Connection::connect(sock, &self.cfg.key, self.cfg.timeout).await?;
            exchange::dial(self, &mut conn, &mut heard).await
        })
        .await;
        self.finish_exchange(Some(addr), sock, heard, result).await
    }

    /// One round: exchanges with up to `fanout` peers at once. `user`: asked for by `sync`
    /// (backoff ignored; fails unless some exchange succeeded).
    pub async fn round(self: &Arc<Self>, user: bool) -> Result<usize, String> {
        self.counters.rounds.fetch_add(1, Ordering::Relaxed);
        let seed = self.rounds.fetch_add(1, Ordering::Relaxed) ^ now_ms();
        let targets = self.peer_table().select_gossip_peers(
            self.cfg.fanout,
            seed,
            Instant::now(),
            user,
            self.db.head(),
        );
        if targets.is_empty() {
            return if user {
                Err("no peer to sync with".into())
            } else {
                Ok(0)
            };
        }
        let mut tasks = tokio::task::JoinSet::new();
        for t in targets {
            let node = self.clone();
            tasks.spawn(async move { node.exchange_with(t, user).await });
        }
        let (mut ok, mut last_err) = (0, None);
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok(Ok(())) => ok += 1,
                Ok(Err(e)) => last_err = Some(e),
                Err(e) => last_err = Some(e.to_string()),
            }
        }
        if ok == 0
            && let Some(e) = last_err
        {
            return Err(e);
        }
        Ok(ok)
    }
}

/// A head an exchange is pulling (see [`Node::wanted`]), given back when dropped.
pub struct Pulling<'a> {
    node: &'a Node,
    pub head: ObjectId,
}

impl Drop for Pulling<'_> {
    fn drop(&mut self) {
        lock(&self.node.pulling).remove(&self.head);
    }
}

impl Replicator for Node {
    fn counters(&self) -> crate::db::ReplicationCounters {
        crate::db::ReplicationCounters {
            rounds: self.counters.rounds.load(Ordering::Relaxed),
            bytes_sent: self.counters.bytes_sent.load(Ordering::Relaxed),
            bytes_received: self.counters.bytes_received.load(Ordering::Relaxed),
        }
    }

    fn sync_now(&self) -> Result<String, String> {
        // Called from a plain thread (a FUSE worker, a CLI request): run the round on the
        // runtime and wait for it.
        let node = self.me.upgrade().ok_or("the gossip service is stopping")?;
        let (tx, rx) = std::sync::mpsc::channel();
        self.handle.spawn(async move {
            let _ = tx.send(node.round(true).await);
        });
        match rx.recv_timeout(self.cfg.timeout * 3) {
            Ok(Ok(n)) => Ok(format!("synced with {n} peer(s)")),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("the sync round did not end in time".into()),
        }
    }

    fn peers(&self) -> Vec<PeerStatus> {
        self.peer_table().status(Instant::now())
    }
}
