//! The db's side of replication: a hook through which the layer above (gossip) answers `sync`
//! and reports its peers, so that `status` and the `sync` command work through the db for the
//! mount and the CLI without either of them naming gossip (no layer calls sideways).
//!
//! The db holds the hook weakly: the gossip service owns the db (an `Arc`), not the reverse,
//! and a stopped service simply stops answering.

use std::sync::{Arc, Weak};

use super::{DbError, GitDb, Result};

/// One peer as `status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PeerStatus {
    pub addr: String,
    pub node: Option<String>,
    pub head: Option<String>,
    /// Milliseconds since the last good exchange; `None`: never.
    pub last_contact_ms: Option<u64>,
    /// Exchanges that failed in a row.
    pub failures: u32,
    /// Milliseconds until the next attempt is allowed (0: any time).
    pub backoff_ms: u64,
    pub alive: bool,
}

/// What a replication service has done since it started, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplicationCounters {
    pub rounds: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

/// What a replication service offers the db.
pub trait Replicator: Send + Sync {
    fn counters(&self) -> ReplicationCounters;
    /// Runs one round of exchanges now and returns when it ends: a one-line summary, or why
    /// it failed (no reachable peer, say).
    fn sync_now(&self) -> std::result::Result<String, String>;
    fn peers(&self) -> Vec<PeerStatus>;
}

impl GitDb {
    /// Installs the replication hook (replacing any earlier one).
    pub fn set_replicator(&self, r: Weak<dyn Replicator>) {
        *self.replicator.write().unwrap_or_else(|p| p.into_inner()) = Some(r);
    }

    fn replicator(&self) -> Option<Arc<dyn Replicator>> {
        self.replicator
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(Weak::upgrade)
    }

    /// Runs a replication round now (`sync` at the mount and the CLI).
    pub fn sync_with_peers(&self) -> Result<String> {
        let r = self.replicator().ok_or(DbError::NoReplication)?;
        r.sync_now()
            .map_err(|reason| DbError::Replication { reason })
    }

    /// The replication service's counters; None without one.
    pub fn replication_counters(&self) -> Option<ReplicationCounters> {
        self.replicator().map(|r| r.counters())
    }

    /// The peers of the replication service; empty without one.
    pub fn peers(&self) -> Vec<PeerStatus> {
        self.replicator().map(|r| r.peers()).unwrap_or_default()
    }
}
