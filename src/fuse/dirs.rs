//! Directory listings for READDIR, which arrives without a handle: the mount answers OPENDIR
//! with ENOSYS, so the kernel opens directories itself and saves a round trip per opening.
//!
//! A listing is taken when a reader starts at offset 0 and kept, numbered, so that the offsets
//! (cookies) handed to the kernel name a position in that exact listing. A reader that goes on
//! (the kernel reads a large directory in several READDIRs, and `telldir`/`seekdir` hand
//! cookies back) sees every entry once even if the directory changes meanwhile. The last
//! [`KEEP`] listings are kept; a cookie whose listing is gone goes on at the same index in a
//! fresh listing, where only entries changed meanwhile can be missed or repeated.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use fuser::FileType;

/// How many listings are kept for readers still going through them...
pub const KEEP: usize = 64;
/// ...and how many entries they may hold in all (the newest listing is always kept).
pub const KEEP_ENTRIES: usize = 1 << 18;

/// One directory listing: (inode, kind, name), `.` and `..` first.
pub struct Listing {
    generation: u32,
    pub entries: Vec<(u64, FileType, String)>,
}

impl Listing {
    /// The cookie of the position after entry `i`.
    pub fn cookie(&self, i: usize) -> u64 {
        (u64::from(self.generation) << 32) | (i as u64 + 1)
    }
}

/// The listings handed out recently. Leaf lock.
#[derive(Default)]
pub struct DirSnapshots {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    generation: u32,
    recent: VecDeque<(u64, Arc<Listing>)>,
    entries: usize,
}

impl DirSnapshots {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The listing of directory `ino` that `offset` points into, and the index to go on
    /// from. None at offset 0 (a reader starting over gets a fresh listing) or when that
    /// listing is gone.
    pub fn find(&self, ino: u64, offset: u64) -> Option<(Arc<Listing>, usize)> {
        if offset == 0 {
            return None;
        }
        let generation = (offset >> 32) as u32;
        self.lock()
            .recent
            .iter()
            .rev()
            .find(|(i, l)| *i == ino && l.generation == generation)
            .map(|(_, l)| (l.clone(), Self::index(offset)))
    }

    /// The index a cookie goes on from.
    pub fn index(offset: u64) -> usize {
        (offset & 0xffff_ffff) as usize
    }

    /// Keeps a new listing of directory `ino`.
    pub fn insert(&self, ino: u64, entries: Vec<(u64, FileType, String)>) -> Arc<Listing> {
        let mut inner = self.lock();
        // Never 0, so no cookie is 0 (the kernel's "from the start").
        inner.generation = inner.generation.wrapping_add(1).max(1);
        let listing = Arc::new(Listing {
            generation: inner.generation,
            entries,
        });
        inner.entries += listing.entries.len();
        inner.recent.push_back((ino, listing.clone()));
        while inner.recent.len() > 1 && (inner.recent.len() > KEEP || inner.entries > KEEP_ENTRIES)
        {
            if let Some((_, old)) = inner.recent.pop_front() {
                inner.entries -= old.entries.len();
            }
        }
        listing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(names: &[&str]) -> Vec<(u64, FileType, String)> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| (i as u64 + 2, FileType::RegularFile, n.to_string()))
            .collect()
    }

    #[test]
    fn cookies_lead_back_into_their_own_listing() {
        let dirs = DirSnapshots::default();
        let first = dirs.insert(7, entries(&["a", "b", "c"]));
        let second = dirs.insert(7, entries(&["b", "c"]));
        let (l, at) = dirs.find(7, first.cookie(0)).expect("first listing");
        assert_eq!((l.entries[at].2.as_str(), at), ("b", 1));
        let (l, at) = dirs.find(7, second.cookie(0)).expect("second listing");
        assert_eq!(l.entries[at].2, "c");
        assert!(dirs.find(8, first.cookie(0)).is_none(), "another directory");
        assert!(dirs.find(7, 0).is_none(), "offset 0 starts over");
        for _ in 0..KEEP {
            dirs.insert(9, entries(&["x"]));
        }
        assert!(dirs.find(7, first.cookie(1)).is_none(), "forgotten");
        assert_eq!(DirSnapshots::index(first.cookie(1)), 2);
        // Huge listings push older ones out, but the newest stays.
        let names: Vec<String> = (0..KEEP_ENTRIES).map(|i| i.to_string()).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let big = dirs.insert(10, entries(&refs));
        let bigger = dirs.insert(11, entries(&refs));
        assert!(dirs.find(10, big.cookie(0)).is_none());
        assert!(dirs.find(11, bigger.cookie(0)).is_some());
    }
}
