//! What `status` shows: node, head, clocks, the uncommitted keys and the peers, as one snapshot.
//! Apart from the verbs because it only reports: it reads the state, the witnesses' counter and
//! the replication hook, and changes nothing.

use crate::db::{Change, FailedOp, GitDb, PeerStatus};

/// A snapshot of the node for `status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    pub node: String,
    pub branch: String,
    pub head: Option<String>,
    pub clock: String,
    pub hlc: String,
    /// The uncommitted changes, in key order (the first `max` of them, see
    /// [`GitDb::status_summary`]).
    pub dirty: Vec<DirtyKey>,
    /// How many uncommitted changes there are in all.
    pub dirty_count: usize,
    /// Tree entries scanned, over the node's life, to decide whether committed directories
    /// with tombstones below them are still visible (see [`GitDb::visibility_scans`]).
    pub visibility_scans: u64,
    /// The replication service's peers (empty for a single node).
    pub peers: Vec<PeerStatus>,
    /// The latest failure of the db's background tasks still standing (an autocommit, see
    /// [`crate::db::tasks`]); a mount shows the latest of this and its own.
    pub last_error: Option<FailedOp>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DirtyKey {
    pub key: String,
    pub change: &'static str,
}

impl GitDb {
    /// Node, head, clocks and the uncommitted keys.
    pub fn status(&self) -> Status {
        self.status_summary(usize::MAX)
    }

    /// [`GitDb::status`] listing at most `max` uncommitted changes (`dirty_count` still counts
    /// them all): what a monitor polls, which should not grow with a bulk load.
    pub fn status_summary(&self, max: usize) -> Status {
        let st = self.read_state();
        Status {
            node: self.node.to_string(),
            branch: self.branch.clone(),
            head: st.head.map(|h| h.to_string()),
            clock: st.clock.to_string(),
            hlc: st.hlc.to_string(),
            dirty_count: st.working.len(),
            dirty: st
                .working
                .iter()
                .take(max)
                .map(|(k, c)| DirtyKey {
                    key: format!("/{k}"),
                    change: match c {
                        Change::Set(_) => "set",
                        Change::Delete => "delete",
                    },
                })
                .collect(),
            visibility_scans: self.visibility_scans(),
            peers: self.peers(),
            last_error: self.task_error(),
        }
    }
}
