//! Inodes whose name was taken by a rename while the kernel may still hold them.
//!
//! The config-update pattern (write a temp file, rename it over `cfg`) races with readers: a
//! reader's `open("cfg")` looks the name up (inode X), the rename then gives the name to the
//! temp file's inode, and the reader's OPEN of X arrives for an inode that no longer has a
//! path. A disk filesystem keeps X alive for whoever holds it, so the open succeeds and reads
//! the old value; answering ENOENT there made a quarter of such opens fail. So a rename that
//! replaces a value records what the replaced inode held, and an OPEN or GETATTR of it is
//! answered from that record (writes to it go nowhere, as to an unlinked file).
//!
//! A record lives until the kernel forgets the inode (FORGET: it never names a nodeid again
//! unless a lookup hands it out, and nothing looks up a name it lost) or, as a bound, until
//! [`MAX_ORPHANS`] newer ones pushed it out; an inode without a record answers ESTALE, which
//! makes the kernel look the name up again.

use std::collections::{HashMap, VecDeque};

use crate::db::{Bytes, ObjectId, ValueMode};

/// At most this many replaced inodes are remembered (about 100 bytes each).
pub const MAX_ORPHANS: usize = 1 << 16;

/// What a replaced inode held when its name was taken.
#[derive(Debug, Clone)]
pub struct Orphan {
    pub id: ObjectId,
    pub mode: ValueMode,
    pub size: u64,
    /// The bytes, for a value that was not committed: the db may forget an uncommitted
    /// value nothing refers to any more, so its id alone would not read it back.
    pub data: Option<Bytes>,
}

/// Replaced inodes by number, oldest first for eviction.
#[derive(Debug, Default)]
pub struct Orphans {
    by_ino: HashMap<u64, Orphan>,
    order: VecDeque<u64>,
}

impl Orphans {
    pub fn insert(&mut self, ino: u64, orphan: Orphan) {
        if self.by_ino.insert(ino, orphan).is_none() {
            self.order.push_back(ino);
        }
        while self.by_ino.len() > MAX_ORPHANS {
            match self.order.pop_front() {
                Some(old) => {
                    self.by_ino.remove(&old);
                }
                None => break,
            }
        }
        // Forgotten numbers stay in `order` (removing them there would cost a scan per
        // FORGET); drop them once they make up half of it.
        if self.order.len() > 2 * self.by_ino.len().max(1024) {
            let live = &self.by_ino;
            self.order.retain(|i| live.contains_key(i));
        }
    }

    pub fn get(&self, ino: u64) -> Option<&Orphan> {
        self.by_ino.get(&ino)
    }

    /// The kernel forgot `ino`: it will never ask about it again.
    pub fn forget(&mut self, ino: u64) {
        self.by_ino.remove(&ino);
    }

    pub fn len(&self) -> usize {
        self.by_ino.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ino.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orphan(size: u64) -> Orphan {
        Orphan {
            id: ObjectId::null(gix::hash::Kind::Sha1),
            mode: ValueMode::Regular,
            size,
            data: None,
        }
    }

    #[test]
    fn forgotten_and_oldest_records_go() {
        let mut o = Orphans::default();
        o.insert(5, orphan(1));
        o.insert(6, orphan(2));
        o.forget(5);
        assert!(o.get(5).is_none());
        assert_eq!(o.get(6).map(|x| x.size), Some(2));
        for ino in 0..MAX_ORPHANS as u64 + 10 {
            o.insert(100 + ino, orphan(ino));
        }
        assert_eq!(o.len(), MAX_ORPHANS);
        assert!(o.get(6).is_none(), "the oldest record is pushed out first");
        assert!(o.get(100 + MAX_ORPHANS as u64 + 9).is_some());
    }
}
