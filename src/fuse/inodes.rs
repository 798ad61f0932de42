//! The inode table: a stable, two-way map between mount paths and FUSE inode numbers.
//!
//! The kernel names every file by an inode number it got from us; the db names it by a key. A
//! path keeps the same number for the whole life of the mount (numbers are never reused), so
//! `find`, `cp -r` and hard-link detectors that compare `st_ino` see a consistent tree. A rename
//! moves the numbers with the names, as a disk filesystem does, because the kernel keeps the
//! dentry it renamed and goes on asking about its old number.
//!
//! Paths are mount-relative without a leading `/`: `""` is the root, `"a/b"` the key `a/b`, and
//! everything under `".gitdb"` is the control directory (the name is reserved for keys, so the
//! two never collide).

use std::collections::{BTreeMap, HashMap};

use crate::paths::at_or_below;

/// Inode number of the mount root (fixed by FUSE).
pub const ROOT_INO: u64 = 1;

/// Path <-> inode number, both ways. Paths are ordered so that a rename finds what is below
/// a name without scanning every path the mount has shown.
#[derive(Debug)]
pub struct InodeTable {
    by_path: BTreeMap<String, u64>,
    by_ino: HashMap<u64, String>,
    next: u64,
}

impl Default for InodeTable {
    fn default() -> Self {
        Self::new()
    }
}

impl InodeTable {
    pub fn new() -> InodeTable {
        let mut t = InodeTable {
            by_path: BTreeMap::new(),
            by_ino: HashMap::new(),
            next: ROOT_INO + 1,
        };
        t.by_path.insert(String::new(), ROOT_INO);
        t.by_ino.insert(ROOT_INO, String::new());
        t
    }

    /// The number of `path`, assigned on first use.
    pub fn ino(&mut self, path: &str) -> u64 {
        if let Some(&ino) = self.by_path.get(path) {
            return ino;
        }
        let ino = self.next;
        self.next += 1;
        self.by_path.insert(path.to_owned(), ino);
        self.by_ino.insert(ino, path.to_owned());
        ino
    }

    /// The number of `path` if it has one.
    pub fn get(&self, path: &str) -> Option<u64> {
        self.by_path.get(path).copied()
    }

    /// The path of `ino`, if the number is known (and was not replaced by a rename).
    pub fn path(&self, ino: u64) -> Option<&str> {
        self.by_ino.get(&ino).map(String::as_str)
    }

    /// Forgets the name `path` (unlinked): its number no longer leads anywhere, and a new file
    /// at `path` gets a new number.
    pub fn detach(&mut self, path: &str) {
        if let Some(ino) = self.by_path.remove(path) {
            self.by_ino.remove(&ino);
        }
    }

    /// Gives `path` a new number on its next lookup, as if the file had been replaced by a
    /// rename: the old number keeps its path (so a handle open on it still flushes there) but
    /// the kernel, once told to drop the name, looks up a new inode whose page cache starts
    /// empty — while readers of the old inode keep the value they opened.
    pub fn replace(&mut self, path: &str) {
        self.by_path.remove(path);
    }

    /// Moves `from` and everything below it to `to`. Whatever held the names at `to` (a
    /// replaced file) loses its path: the kernel no longer reaches it by name.
    pub fn rename(&mut self, from: &str, to: &str) {
        let moved: Vec<(String, u64)> = at_or_below(&self.by_path, from)
            .map(|(p, &i)| (p.clone(), i))
            .collect();
        let replaced: Vec<String> = at_or_below(&self.by_path, to)
            .map(|(p, _)| p.clone())
            .collect();
        for p in replaced {
            if let Some(ino) = self.by_path.remove(&p) {
                self.by_ino.remove(&ino);
            }
        }
        for (p, _) in &moved {
            self.by_path.remove(p);
        }
        for (p, ino) in moved {
            let new = format!("{to}{}", &p[from.len()..]);
            self.by_path.insert(new.clone(), ino);
            self.by_ino.insert(ino, new);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_stable_and_distinct() {
        let mut t = InodeTable::new();
        assert_eq!(t.ino(""), ROOT_INO);
        let a = t.ino("a");
        let b = t.ino("a/b");
        assert_ne!(a, b);
        assert_eq!(t.ino("a"), a);
        assert_eq!(t.path(b), Some("a/b"));
    }

    #[test]
    fn rename_moves_subtree_and_drops_replaced() {
        let mut t = InodeTable::new();
        let d = t.ino("d");
        let f = t.ino("d/f");
        let old = t.ino("e");
        let other = t.ino("dd");
        t.rename("d", "e");
        assert_eq!(t.get("e"), Some(d));
        assert_eq!(t.get("e/f"), Some(f));
        assert_eq!(t.path(f), Some("e/f"));
        assert_eq!(t.path(old), None);
        assert_eq!(t.get("d"), None);
        assert_eq!(t.path(other), Some("dd"));
    }
}
