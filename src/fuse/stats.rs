//! Counters of the requests the kernel sent the daemon and of what the daemon did for the
//! kernel's caches, shown in `/.gitdb/status` (`requests`, `page_cache`).
//!
//! Every FUSE request is a round trip, and the mount's speed comes from the kernel answering
//! most of them itself: these counters show an operator where round trips go (as `nfsstat`
//! does), and let tests check that what the kernel should answer never reaches the daemon.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// A request the kernel sends, as counted.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    Lookup,
    Getattr,
    Setattr,
    Open,
    Create,
    Read,
    Write,
    Flush,
    Release,
    Fsync,
    Mkdir,
    Unlink,
    Rmdir,
    Rename,
    Symlink,
    Readlink,
    Readdir,
    Readdirplus,
    Ioctl,
    Access,
    Statfs,
    /// mknod, link, opendir, fsyncdir, xattr calls: each answered once or rarely.
    Other,
}

const NAMES: [&str; 22] = [
    "lookup",
    "getattr",
    "setattr",
    "open",
    "create",
    "read",
    "write",
    "flush",
    "release",
    "fsync",
    "mkdir",
    "unlink",
    "rmdir",
    "rename",
    "symlink",
    "readlink",
    "readdir",
    "readdirplus",
    "ioctl",
    "access",
    "statfs",
    "other",
];

/// The counters of one mount. Relaxed atomics: they are statistics, not synchronization.
pub struct Stats {
    requests: [AtomicU64; NAMES.len()],
    prefilled: AtomicU64,
    warmed: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
            prefilled: AtomicU64::new(0),
            warmed: AtomicU64::new(0),
        }
    }
}

/// What `status` shows.
#[derive(Debug, serde::Serialize)]
pub struct Snapshot {
    /// Requests per kind since the mount.
    pub requests: BTreeMap<&'static str, u64>,
    pub page_cache: PageCache,
    /// Busy polling of the FUSE device (see [`super::busy`]), filled in by the mount.
    pub busy_poll: super::busy::Snapshot,
}

#[derive(Debug, serde::Serialize)]
pub struct PageCache {
    /// Values put in the kernel's page cache after their writer let go of them.
    pub prefilled: u64,
    /// Files whose attributes were fetched back into the kernel's cache after a write.
    pub attributes_warmed: u64,
}

impl Stats {
    pub fn request(&self, op: Op) {
        self.requests[op as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn prefilled(&self) {
        self.prefilled.fetch_add(1, Ordering::Relaxed);
    }

    pub fn warmed(&self) {
        self.warmed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            requests: NAMES
                .iter()
                .zip(&self.requests)
                .map(|(name, n)| (*name, n.load(Ordering::Relaxed)))
                .collect(),
            page_cache: PageCache {
                prefilled: self.prefilled.load(Ordering::Relaxed),
                attributes_warmed: self.warmed.load(Ordering::Relaxed),
            },
            busy_poll: super::busy::Snapshot::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_has_its_own_name() {
        let stats = Stats::default();
        stats.request(Op::Readdirplus);
        stats.request(Op::Lookup);
        stats.request(Op::Lookup);
        let snap = stats.snapshot();
        assert_eq!(snap.requests["lookup"], 2);
        assert_eq!(snap.requests["readdirplus"], 1);
        assert_eq!(snap.requests.len(), NAMES.len());
        assert_eq!(Op::Other as usize, NAMES.len() - 1);
    }
}
