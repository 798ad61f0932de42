//! Witnesses: for a committed directory with tombstones below it, the committed value found to
//! keep it visible last time it was asked.
//!
//! A committed directory is visible while some value below it is not deleted. Answering that
//! by scanning its tree from the first entry costs, during `rm -rf` of a directory of n
//! committed files, one step per tombstone already there — O(n²) for the whole removal (issue
//! 10: 10,072 unlinks in 721 s). Instead the answer is remembered with its witness: the value
//! that was found visible and the index of the entry it lies under. Asking again first checks
//! the witness (a few map lookups); only when it has been deleted does the scan go on, from the
//! witness's entry onwards and then wrapping round, so a removal in any order visits each
//! deleted entry about once over the whole removal rather than once per unlink.
//!
//! A witness names its tree by id, so a moved head (new tree ids) never trusts an old one, and
//! it is checked against the working layer each time, so it needs no invalidation: it is only
//! a hint where to start. "No visible value" is not remembered (a new commit or a rollback
//! could change it); it is asked once per emptied directory, before its own tombstone or its
//! removal from the head settles it.
//!
//! Lock order: the witness map is a leaf lock, taken while the caller holds `state` shared;
//! nothing else is locked while it is held.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::store::ObjectId;

/// At most this many directories' witnesses are kept; past it the map starts over (a witness
/// is only a hint, so forgetting costs one scan).
const MAX_WITNESSES: usize = 4096;

/// A remembered answer for the directory at one path.
#[derive(Debug, Clone)]
pub(crate) struct Witness {
    /// The committed tree of the directory the witness was found in.
    pub tree: ObjectId,
    /// The index in that tree of the entry the witness lies at or under.
    pub index: usize,
    /// The full tree path of the visible value.
    pub path: String,
}

/// The witnesses by directory path, and a count of the tree entries scanned to find them.
#[derive(Default)]
pub(crate) struct Witnesses {
    by_dir: Mutex<HashMap<String, Witness>>,
    scanned: AtomicU64,
}

impl Witnesses {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Witness>> {
        self.by_dir.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The witness last found for the directory `dir` in `tree`, if any.
    pub fn get(&self, dir: &str, tree: ObjectId) -> Option<Witness> {
        self.lock().get(dir).filter(|w| w.tree == tree).cloned()
    }

    pub fn remember(&self, dir: &str, witness: Witness) {
        let mut map = self.lock();
        if map.len() >= MAX_WITNESSES && !map.contains_key(dir) {
            map.clear();
        }
        map.insert(dir.to_owned(), witness);
    }

    /// One more tree entry looked at in the search for a visible value.
    pub fn count_scanned(&self) {
        self.scanned.fetch_add(1, Ordering::Relaxed);
    }

    /// Tree entries looked at so far in searches for a visible value (for tests and
    /// diagnostics: it must grow about linearly with the deletes in a directory).
    pub fn scanned(&self) -> u64 {
        self.scanned.load(Ordering::Relaxed)
    }
}
