//! The gossip service: a tokio runtime of its own that listens for peers, runs an exchange with
//! `fanout` random peers every `interval` (anti-entropy), and pushes news at once: whenever the
//! db's head moves (a local commit, or a merge this node just made from news it received) the
//! node starts a round to `fanout` peers, so a change spreads in O(log N) hops without waiting
//! for the timer.
//!
//! [`Gossip`] owns the runtime and is the drop guard: dropping it (or [`Gossip::stop`]) stops the
//! tasks; an exchange cut at that point leaves nothing named by a ref (see [`super::exchange`]).
//! The db reaches the service only through the [`Replicator`] hook it holds weakly (`sync` at
//! the mount, `peers` in `status`), so fuse never names gossip. This file holds the service's
//! configuration, its start and stop, and its two timed tasks; the state they share and the
//! rounds they run are [`super::node`], accepting peers is [`super::listener`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::key::ClusterKey;
use super::listener::accept_loop;
use super::node::{Node, is_loopback_name};
use crate::db::{GitDb, PeerStatus, Replicator};
use crate::merge::Strategy;

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
    /// The longest a whole exchange may take (see [`super::exchange::DEADLINE`]).
    pub deadline: Duration,
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
            deadline: super::exchange::DEADLINE,
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
        let node = Node::new(db, cfg, local_addr, runtime.handle().clone());
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
