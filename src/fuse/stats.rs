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
    /// mknod, link, opendir, fsyncdir, xattr calls: each answered once or rarely. Last.
    Other,
}

impl Op {
    /// Every op, in declaration order (checked by a test), to walk the counters.
    const ALL: [Op; 22] = [
        Op::Lookup,
        Op::Getattr,
        Op::Setattr,
        Op::Open,
        Op::Create,
        Op::Read,
        Op::Write,
        Op::Flush,
        Op::Release,
        Op::Fsync,
        Op::Mkdir,
        Op::Unlink,
        Op::Rmdir,
        Op::Rename,
        Op::Symlink,
        Op::Readlink,
        Op::Readdir,
        Op::Readdirplus,
        Op::Ioctl,
        Op::Access,
        Op::Statfs,
        Op::Other,
    ];

    /// The name `status` shows.
    fn name(self) -> &'static str {
        match self {
            Op::Lookup => "lookup",
            Op::Getattr => "getattr",
            Op::Setattr => "setattr",
            Op::Open => "open",
            Op::Create => "create",
            Op::Read => "read",
            Op::Write => "write",
            Op::Flush => "flush",
            Op::Release => "release",
            Op::Fsync => "fsync",
            Op::Mkdir => "mkdir",
            Op::Unlink => "unlink",
            Op::Rmdir => "rmdir",
            Op::Rename => "rename",
            Op::Symlink => "symlink",
            Op::Readlink => "readlink",
            Op::Readdir => "readdir",
            Op::Readdirplus => "readdirplus",
            Op::Ioctl => "ioctl",
            Op::Access => "access",
            Op::Statfs => "statfs",
            Op::Other => "other",
        }
    }
}

/// The counters of one mount. Relaxed atomics: they are statistics, not synchronization.
pub struct Stats {
    requests: [AtomicU64; Op::ALL.len()],
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
            requests: Op::ALL
                .iter()
                .map(|&op| {
                    (
                        op.name(),
                        self.requests[op as usize].load(Ordering::Relaxed),
                    )
                })
                .collect(),
            page_cache: PageCache {
                prefilled: self.prefilled.load(Ordering::Relaxed),
                attributes_warmed: self.warmed.load(Ordering::Relaxed),
            },
            busy_poll: super::busy::Snapshot::default(),
        }
    }
}

impl Stats {
    /// The mount's part of a metrics scrape (see [`crate::db::metrics`]).
    pub fn register_metrics(&self, scrape: &crate::db::metrics::Scrape) {
        if let Ok(requests) = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "fuse_requests_total",
                "Requests the kernel sent the mount, by FUSE operation",
            ),
            &["op"],
        ) {
            for op in Op::ALL {
                requests
                    .with_label_values(&[op.name()])
                    .inc_by(self.requests[op as usize].load(Ordering::Relaxed));
            }
            scrape.add(requests);
        }
        scrape.counter(
            "page_cache_prefills_total",
            "Values put in the kernel's page cache after their writer let go",
            self.prefilled.load(Ordering::Relaxed),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_has_its_own_name_and_counter() {
        for (i, op) in Op::ALL.iter().enumerate() {
            assert_eq!(*op as usize, i, "{op:?} out of place in Op::ALL");
        }
        // A variant added after `Other` but missing from ALL would index past the counters.
        assert_eq!(
            Op::Other as usize,
            Op::ALL.len() - 1,
            "Other must stay last"
        );
        let names: std::collections::BTreeSet<_> = Op::ALL.iter().map(|op| op.name()).collect();
        assert_eq!(names.len(), Op::ALL.len());
        let stats = Stats::default();
        stats.request(Op::Readdirplus);
        stats.request(Op::Lookup);
        stats.request(Op::Lookup);
        let snap = stats.snapshot();
        assert_eq!(snap.requests["lookup"], 2);
        assert_eq!(snap.requests["readdirplus"], 1);
        assert_eq!(snap.requests["getattr"], 0);
        assert_eq!(snap.requests.len(), Op::ALL.len());
    }
}
