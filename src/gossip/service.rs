//! The gossip service: a tokio runtime of its own that listens for peers, runs an exchange with
//! `fanout` random peers every `interval` (anti-entropy), and pushes news at once: whenever the
//! db's head moves (a local commit, or a merge this node just made from news it received) the
//! node starts a round to `fanout` peers, so a change spreads in O(log N) hops without waiting
//! for the timer.
//!
//! [`Gossip`] owns the runtime and is the drop guard: dropping it (or [`Gossip::stop`]) stops the
//! tasks; an exchange cut at that point leaves nothing named by a ref (see [`super::exchange`]).
//! The db reaches the service only through the [`Replicator`] hook it holds weakly (`sync` at
//! the mount, `peers` in `status`), so fuse never names gossip.
//!
//! Locks: `peers`, `pulling`, `last_error` and `in_flight` are std mutexes taken briefly, never
//! across an await or a db call; `merging` (tokio) serializes merges, and is held across one.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::connection::Connection;
use super::exchange::{self, ExchangeError, Outcome};
use super::key::ClusterKey;
use super::message::{Announce, MAX_PEERS_PER_ANNOUNCE, clock_to_wire, object_id, oid};
use super::peers::PeerTable;
use super::skew::{self, SkewWatch};
use crate::db::{GitDb, ObjectId, PeerStatus, Replicator};
use crate::merge::Strategy;

/// Most inbound exchanges served at once (authenticated peers); more wait for a slot, after
/// their handshake, holding only their socket.
const MAX_INBOUND: usize = 64;
/// Most inbound connections still in their preamble or handshake (not yet proven to hold the
/// cluster key). A new one beyond this closes the oldest: idle or slow-loris connections
/// never hold more than this many sockets, and never block the accept loop, while a good
/// peer's handshake (one round trip) is done long before 128 newer connections push it out.
pub const MAX_HANDSHAKING: usize = 128;
/// The longest an inbound preamble and handshake may take (or the exchange timeout, if
/// shorter): a peer that sends a byte a second is cut off after this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct GossipConfig {
    /// Where to accept peers; `None`: dial only.
    pub listen: Option<SocketAddr>,
    /// The address to announce instead of `listen` (behind NAT, or a name).
    pub advertise: Option<String>,
    pub peers: Vec<String>,
    pub fanout: usize,
    pub interval: Duration,
    pub key: ClusterKey,
    /// Accept and dial non-loopback peers without a cluster key.
    pub insecure: bool,
    pub strategy: Arc<Strategy>,
    /// How long to wait for each message of an exchange.
    pub timeout: Duration,
}

impl GossipConfig {
    pub fn new(strategy: Strategy) -> GossipConfig {
        GossipConfig {
            listen: None,
            advertise: None,
            peers: Vec::new(),
            fanout: 3,
            interval: Duration::from_secs(1),
            key: ClusterKey::open(),
            insecure: false,
            strategy: Arc::new(strategy),
            timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    #[error("cannot start the gossip runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "{addr} is not a loopback address: without --cluster-key-file a node only talks to \
         loopback peers (pass --insecure to allow it)"
    )]
    NeedsKey { addr: String },
}

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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each of these tables is consistent after any single statement: a panic elsewhere
    // leaves nothing half-updated, so the poison carries no information.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The running service; stops on drop.
pub struct Gossip {
    node: Arc<Node>,
    shutdown: watch::Sender<bool>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Gossip {
    /// Binds the listener (if any), installs the db hook and starts the tasks.
    pub fn start(db: Arc<GitDb>, cfg: GossipConfig) -> Result<Gossip, GossipError> {
        if !cfg.key.is_secret() && !cfg.insecure {
            for p in &cfg.peers {
                if !is_loopback_name(p) {
                    return Err(GossipError::NeedsKey { addr: p.clone() });
                }
            }
            if let Some(l) = cfg.listen
                && !l.ip().is_loopback()
            {
                return Err(GossipError::NeedsKey {
                    addr: l.to_string(),
                });
            }
        }
        if !cfg.key.is_secret() {
            log::warn!(
                "gossip without a cluster key: sessions are encrypted but anyone who can reach \
                 this node can join{}",
                if cfg.insecure {
                    " (--insecure: non-loopback peers allowed)"
                } else {
                    "; only loopback peers are accepted"
                }
            );
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("gitdb-gossip")
            .enable_all()
            .build()
            .map_err(GossipError::Runtime)?;
        let listener = match cfg.listen {
            Some(addr) => Some(
                runtime
                    .block_on(TcpListener::bind(addr))
                    .map_err(|source| GossipError::Listen { addr, source })?,
            ),
            None => None,
        };
        let local_addr = listener.as_ref().and_then(|l| l.local_addr().ok());
        let node = Arc::new_cyclic(|me| Node {
            peers: Mutex::new(PeerTable::new(&cfg.peers, cfg.interval)),
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
            handle: runtime.handle().clone(),
            rounds: AtomicU64::new(0),
            me: me.clone(),
        });
        let (shutdown, stop) = watch::channel(false);
        // Every head move, awaited straight from the db (no callback, no channel of ours).
        let news = node.db.watch_head();
        // Peers pass on the address we announce: it is ours, never a peer to list or dial
        // (until the first dial found that out, status and metrics showed us as a down peer).
        if let Some(own) = node.announce_listen() {
            node.peer_table().is_me(&own);
        }
        let hook: Arc<dyn Replicator> = node.clone();
        node.db.set_replicator(Arc::downgrade(&hook));
        drop(hook);
        if let Some(listener) = listener {
            runtime.spawn(accept_loop(node.clone(), listener, stop.clone()));
        }
        runtime.spawn(timer_loop(node.clone(), stop.clone()));
        runtime.spawn(news_loop(node.clone(), news, stop));
        log::info!(
            "gossip: node {}{}, {} seed peer(s), fanout {}, every {:?}",
            node.db.node(),
            match local_addr {
                Some(a) => format!(" listening on {a}"),
                None => String::new(),
            },
            node.cfg.peers.len(),
            node.cfg.fanout,
            node.cfg.interval
        );
        Ok(Gossip {
            node,
            shutdown,
            runtime: Some(runtime),
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.node.local_addr
    }

    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Runs a round with every due peer (up to `fanout`) now; see [`Replicator::sync_now`].
    pub fn sync_now(&self) -> Result<String, String> {
        self.node.sync_now()
    }

    pub fn peers(&self) -> Vec<PeerStatus> {
        self.node.peers()
    }

    /// Stops the tasks; exchanges in flight are abandoned (nothing of theirs is named by a
    /// ref), a merge in flight finishes.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

impl Drop for Gossip {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

fn is_loopback_name(addr: &str) -> bool {
    use std::net::ToSocketAddrs;
    match addr.to_socket_addrs() {
        Ok(mut addrs) => addrs.all(|a| a.ip().is_loopback()),
        Err(_) => false,
    }
}

/// The inbound connections in their handshake, oldest first, each with the signal that
/// closes it (see [`MAX_HANDSHAKING`]).
#[derive(Default)]
struct Handshaking {
    next: u64,
    open: std::collections::VecDeque<(u64, Arc<tokio::sync::Notify>)>,
}

/// A connection's place in [`Handshaking`], given back when its handshake ends either way.
struct HandshakeSlot {
    table: Arc<Mutex<Handshaking>>,
    id: u64,
}

impl HandshakeSlot {
    /// Takes a place, closing the oldest handshake if all are taken.
    fn take(table: &Arc<Mutex<Handshaking>>) -> (HandshakeSlot, Arc<tokio::sync::Notify>) {
        let mut t = lock(table);
        if t.open.len() >= MAX_HANDSHAKING
            && let Some((_, oldest)) = t.open.pop_front()
        {
            // notify_one keeps the wake-up if the task is not waiting yet.
            oldest.notify_one();
        }
        let id = t.next;
        t.next += 1;
        let evict = Arc::new(tokio::sync::Notify::new());
        t.open.push_back((id, evict.clone()));
        (
            HandshakeSlot {
                table: table.clone(),
                id,
            },
            evict,
        )
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        lock(&self.table).open.retain(|(id, _)| *id != self.id);
    }
}

async fn accept_loop(node: Arc<Node>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(MAX_INBOUND));
    let handshaking = Arc::new(Mutex::new(Handshaking::default()));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let (stream, from) = match accepted {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors, say: wait instead of spinning on the error.
                log::warn!("gossip: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if !node.cfg.key.is_secret() && !node.cfg.insecure && !from.ip().is_loopback() {
            log::warn!("gossip: refused {from}: not loopback, and no cluster key is set");
            continue;
        }
        let (slot, evicted) = HandshakeSlot::take(&handshaking);
        let node = node.clone();
        let slots = slots.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let deadline = node.cfg.timeout.min(HANDSHAKE_TIMEOUT);
            let conn = tokio::select! {
                c = Connection::accept(stream, &node.cfg.key, deadline) => c,
                _ = evicted.notified() => {
                    log::debug!("gossip: closed {from}: {MAX_HANDSHAKING} newer handshakes");
                    return;
                }
                _ = stop.changed() => return,
            };
            drop(slot);
            let mut conn = match conn {
                Ok(c) => c,
                Err(e) => {
                    log::warn!("gossip: handshake with {from} failed: {e}");
                    return;
                }
            };
            let permit = tokio::select! {
                p = slots.acquire_owned() => p,
                _ = stop.changed() => return,
            };
            let Ok(_permit) = permit else {
                return;
            };
            tokio::select! {
                _ = inbound(&node, &mut conn, from) => {}
                _ = stop.changed() => {}
            }
        });
    }
}

async fn inbound(node: &Arc<Node>, conn: &mut Connection, from: SocketAddr) {
    let result = exchange::respond(node, conn).await;
    let _ = node.finish_exchange(None, from, result).await;
}

async fn timer_loop(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(node.cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        // Also picks up commits stock git made, so they spread without a mount's watcher.
        let db = node.db.clone();
        let _ = tokio::task::spawn_blocking(move || db.refresh()).await;
        let _ = node.round(false).await;
    }
}

async fn news_loop(
    node: Arc<Node>,
    mut news: watch::Receiver<crate::db::HeadState>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            changed = news.changed() => if changed.is_err() { return },
            _ = stop.changed() => return,
        }
        // The watch holds only the latest head: a burst of moves is one push. (An unborn
        // branch has nothing to push.)
        if news.borrow_and_update().head.is_some() {
            let _ = node.round(false).await;
        }
    }
}

impl Node {
    fn peer_table(&self) -> MutexGuard<'_, PeerTable> {
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
    fn announce_listen(&self) -> Option<String> {
        self.cfg
            .advertise
            .clone()
            .or_else(|| self.local_addr.map(|a| a.to_string()))
    }

    /// The head of `theirs` if we lack it and no other exchange is pulling it already (then
    /// it is ours to pull).
    pub fn wanted(&self, theirs: &Announce) -> Option<ObjectId> {
        let head = object_id(theirs.head.as_ref()?);
        if theirs.node == self.db.node().as_str() || self.db.has_object(head) {
            return None;
        }
        lock(&self.pulling).insert(head).then_some(head)
    }

    pub fn done_pulling(&self, head: ObjectId) {
        lock(&self.pulling).remove(&head);
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

    /// Books the result of an exchange with `dialed` (or an inbound one from `from`) and merges
    /// what it brought.
    async fn finish_exchange(
        self: &Arc<Self>,
        dialed: Option<&str>,
        from: SocketAddr,
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
                    if let Some(a) = &addr {
                        // A peer that just pulled our head has it now (peer choice goes by
                        // what peers are known to hold).
                        let head = if outcome.served {
                            self.db.head()
                        } else {
                            theirs.head.as_ref().map(object_id)
                        };
                        t.contact_ok(a, &theirs.node, head, now);
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
                log::info!(
                    "gossip: exchange with {who} failed: {e}{}",
                    match backoff {
                        Some(b) => format!(" (next try in {b:?})"),
                        None => String::new(),
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
            return self.finish_exchange(Some(addr), nowhere, Err(e)).await;
        };
        if Some(sock) == self.local_addr {
            self.peer_table().is_me(addr);
            return Ok(());
        }
        let result = async {
            let mut conn = Connection::connect(sock, &self.cfg.key, self.cfg.timeout).await?;
            exchange::dial(self, &mut conn).await
        }
        .await;
        self.finish_exchange(Some(addr), sock, result).await
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

/// Why a headless node stopped other than by a signal.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Gossip(#[from] GossipError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Remote(#[from] crate::remote::RemoteError),
    #[error("cannot sync the journal at shutdown: {0}")]
    Db(#[from] crate::db::DbError),
}

/// A headless node (`gitdb serve`): gossip (if configured) until SIGINT or SIGTERM, then a
/// clean stop: the service stops (a merge in flight finishes), the journal is synced.
pub fn serve_until_signalled(
    db: Arc<GitDb>,
    cfg: Option<GossipConfig>,
    remote: Option<crate::remote::RemoteConfig>,
) -> Result<(), ServeError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).map_err(ServeError::Signals)?;
    let gossip = match cfg {
        Some(cfg) => Some(Gossip::start(db.clone(), cfg)?),
        None if remote.is_some() => None,
        None => {
            log::warn!("gitdb serve without --listen, --peer or --remote: a single node");
            None
        }
    };
    let remote = match remote {
        Some(cfg) => Some(crate::remote::RemoteSync::start(db.clone(), cfg)?),
        None => None,
    };
    log::info!(
        "gitdb serve: node {}, repository {}{}; stop with Ctrl-C or SIGTERM",
        db.node(),
        db.git_dir().display(),
        gossip
            .as_ref()
            .and_then(|g| g.local_addr())
            .map_or(String::new(), |a| format!(", gossip on {a}"))
    );
    // The one line scripts wait for: the address actually bound (port 0 picks one).
    if let Some(a) = gossip.as_ref().and_then(|g| g.local_addr()) {
        println!("listening {a}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }
    crate::notify::ready(&format!(
        "node {} serving {}",
        db.node(),
        db.git_dir().display()
    ));
    let signal = signals.forever().next();
    crate::notify::stopping();
    log::info!("gitdb serve: signal {signal:?}; stopping");
    drop(remote);
    drop(gossip);
    db.sync()?;
    Ok(())
}
