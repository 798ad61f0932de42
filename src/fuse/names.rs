//! The mount-local namespace: resolving inode numbers and names to paths, and what this layer
//! knows about names beyond the db — directories kept by mkdir (git stores no empty
//! directory), files created and not flushed yet (pending), and the link counts of
//! directories given out (the nlink cache).

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::sync::atomic::Ordering;

use fuser::{Errno, INodeNo};

use super::control;
use super::errno::{db_err, lookup_err};
use super::fscore::FsCore;
use super::shared::{Shared, lock};
use crate::paths::{at_or_below, below, child_of, join, split};

use crate::db::{DbError, Stat, ValueMode};

impl Shared {
    /// Directories may have gained or lost subdirectories anywhere (HEAD moved, rollback).
    pub(crate) fn forget_nlinks(&self) {
        let mut nlinks = lock(&self.nlinks);
        self.nlinks_gen.fetch_add(1, Ordering::SeqCst);
        nlinks.clear();
    }

    /// `dir` gained (`delta` 1, mkdir) or lost (-1, rmdir) a subdirectory. A count given out
    /// is adjusted rather than forgotten: creating many directories in one would otherwise
    /// count its subdirectories again at every creation.
    pub(super) fn subdir_added(&self, dir: &str, delta: i32) {
        let mut nlinks = lock(&self.nlinks);
        self.nlinks_gen.fetch_add(1, Ordering::SeqCst);
        if let Some(n) = nlinks.get_mut(dir) {
            *n = n.saturating_add_signed(delta);
        }
    }

    /// mkdir made `dir`: one more in its parent, and its own count (`.` and its name in the
    /// parent) is known without counting.
    pub(super) fn dir_made(&self, dir: &str) {
        self.subdir_added(split(dir).0, 1);
        lock(&self.nlinks).insert(dir.to_owned(), 2);
    }

    /// A rename moved `from` to `to`: every count at or below either name, and their
    /// parents', may be wrong now.
    pub(super) fn forget_nlinks_around(&self, from: &str, to: &str) {
        let mut nlinks = lock(&self.nlinks);
        self.nlinks_gen.fetch_add(1, Ordering::SeqCst);
        for path in [from, to] {
            let stale: Vec<String> = at_or_below(&nlinks, path).map(|(p, _)| p.clone()).collect();
            for p in stale {
                nlinks.remove(&p);
            }
            nlinks.remove(split(path).0);
        }
    }
}

impl FsCore {
    /// The path of `ino`. ESTALE for an inode whose name went away under the kernel
    /// (unlinked, replaced by a rename): the kernel then looks the name up again, which
    /// finds what is there now, instead of failing (a create in a directory that was just
    /// replaced, say) with an ENOENT for a name that exists.
    pub(super) fn path_of(&self, ino: INodeNo) -> Result<String, Errno> {
        lock(&self.s.inodes)
            .path(ino.0)
            .map(str::to_owned)
            .ok_or(Errno::ESTALE)
    }

    pub(super) fn ino_of(&self, path: &str) -> u64 {
        lock(&self.s.inodes).ino(path)
    }

    pub(super) fn child(&self, parent: INodeNo, name: &OsStr) -> Result<String, Errno> {
        let name = name.to_str().ok_or(Errno::EINVAL)?;
        let parent = self.path_of(parent)?;
        Ok(join(&parent, name))
    }

    /// The path of `name` in `parent`, for an operation that changes it: EPERM inside the
    /// control directory (its names are not the user's to make or remove) and EROFS on a
    /// read-only mount.
    pub(super) fn writable_child(&self, parent: INodeNo, name: &OsStr) -> Result<String, Errno> {
        let path = self.child(parent, name)?;
        if control::is_under(&path) {
            return Err(Errno::EPERM);
        }
        self.check_writable()?;
        Ok(path)
    }

    /// The path of a name to make in `parent` (create, mknod, mkdir, symlink, a rename's
    /// target), as [`Self::writable_child`]. The kernel only makes names in what it knows as
    /// a directory; if that is no longer one here (a rollback or a head move took it away
    /// and the kernel has not dropped it yet), ESTALE makes the kernel look the directory
    /// up again, so `mkdir -p d && echo > d/f` ends well instead of failing on a stale `d`.
    pub(super) fn new_child(&self, parent: INodeNo, name: &OsStr) -> Result<String, Errno> {
        let path = self.writable_child(parent, name)?;
        match self.is_dir(split(&path).0) {
            Ok(true) => Ok(path),
            Ok(false) | Err(Errno::ENOENT) => Err(Errno::ESTALE),
            Err(e) => Err(e),
        }
    }

    pub(super) fn pending_mode(&self, path: &str) -> Option<ValueMode> {
        lock(&self.s.pending).get(path).copied()
    }

    /// Whether a kept directory or a pending file lies below `path`.
    pub(super) fn has_local_children(&self, path: &str) -> bool {
        lock(&self.s.empty_dirs)
            .range::<str, _>(below(path))
            .next()
            .is_some()
            || lock(&self.s.pending)
                .range::<str, _>(below(path))
                .next()
                .is_some()
    }

    /// Number of links of the directory `path`: `.`, its name in its parent, and each
    /// subdirectory's `..` — what `find` and pjdfstest expect. Costs a listing of the
    /// directory's subdirectories; the kernel caches the answer with the other attributes.
    pub(super) fn dir_nlink(&self, path: &str) -> u32 {
        if let Some(&n) = lock(&self.s.nlinks).get(path) {
            return n;
        }
        let before = self.s.nlinks_gen.load(Ordering::SeqCst);
        let n = self.count_dir_links(path);
        let mut nlinks = lock(&self.s.nlinks);
        if self.s.nlinks_gen.load(Ordering::SeqCst) != before {
            return n;
        }
        if nlinks.len() >= 1 << 16 {
            nlinks.clear();
        }
        nlinks.insert(path.to_owned(), n);
        n
    }

    pub(super) fn count_dir_links(&self, path: &str) -> u32 {
        let mut subdirs: BTreeSet<String> = match self.db().subdirs(path) {
            Ok(names) => names.into_iter().collect(),
            // A directory kept by mkdir is not in the store.
            Err(DbError::NotFound { .. }) => BTreeSet::new(),
            Err(e) => {
                log::warn!("counting the subdirectories of /{path}: {e}");
                BTreeSet::new()
            }
        };
        subdirs.extend(
            lock(&self.s.empty_dirs)
                .range::<str, _>(below(path))
                .filter_map(|d| child_of(path, d))
                .map(str::to_owned),
        );
        // The root also holds the control directory.
        let control = u32::from(path.is_empty());
        2u32.saturating_add(u32::try_from(subdirs.len()).unwrap_or(u32::MAX))
            .saturating_add(control)
    }

    /// Turns a pending file into an empty value in the store (before an operation that needs
    /// the store to hold it, such as a rename while it is still being written).
    pub(super) fn materialize(&self, path: &str) -> Result<(), Errno> {
        let Some(mode) = self.pending_mode(path) else {
            return Ok(());
        };
        self.db()
            .set_with_mode(path, b"", mode)
            .map_err(|e| db_err(&e))?;
        lock(&self.s.pending).remove(path);
        self.key_added(path);
        Ok(())
    }

    pub(super) fn is_empty_dir(&self, path: &str) -> bool {
        lock(&self.s.empty_dirs).contains(path)
    }

    /// Whether `path` is a directory (in the db or kept by mkdir).
    pub(super) fn is_dir(&self, path: &str) -> Result<bool, Errno> {
        if path.is_empty() {
            return Ok(true);
        }
        match self.db().stat(path) {
            Ok(Some(Stat::Dir)) => Ok(true),
            Ok(Some(Stat::Value { .. })) => Ok(false),
            Ok(None) => Ok(self.is_empty_dir(path)),
            Err(e) => Err(lookup_err(&e)),
        }
    }

    /// A key now exists at (or below) `path`: its ancestors are directories of the store, so
    /// the mount no longer needs to keep them (a later removal keeps them again, see
    /// [`Self::keep_parent_dirs`]). Keeps the set of kept directories small.
    pub(super) fn key_added(&self, path: &str) {
        let mut dirs = lock(&self.s.empty_dirs);
        if dirs.is_empty() {
            return;
        }
        let mut cur = split(path).0;
        while !cur.is_empty() {
            dirs.remove(cur);
            cur = split(cur).0;
        }
    }

    /// After a removal at `path`: keep its ancestors as (empty) directories, as a disk
    /// filesystem would, instead of letting them vanish with their last key.
    pub(super) fn keep_parent_dirs(&self, path: &str) {
        let mut cur = split(path).0;
        let mut keep = Vec::new();
        while !cur.is_empty() {
            match self.db().stat(cur) {
                Ok(Some(Stat::Dir)) => break,
                _ => keep.push(cur.to_owned()),
            }
            cur = split(cur).0;
        }
        if !keep.is_empty() {
            lock(&self.s.empty_dirs).extend(keep);
        }
    }

    pub(super) fn check_writable(&self) -> Result<(), Errno> {
        if self.s.cfg.read_only {
            Err(Errno::EROFS)
        } else {
            Ok(())
        }
    }
}
