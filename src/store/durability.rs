//! Durability: forcing written objects and moved refs (with their directories) to disk.
//!
//! Apart from writing because a ref may only be pointed at objects that are on disk: a crash
//! of the machine must never leave a ref naming lost objects, and fsync cost is what decides
//! between one fsync per file and one syncfs of the filesystem.

use std::path::{Path, PathBuf};

use super::{ObjectId, Result, Store, StoreError};

/// Above this many objects, [`Store::sync_objects`] syncs the filesystem once instead of
/// fsyncing each object.
pub const SYNCFS_THRESHOLD: usize = 256;

impl Store {
    /// Forces the loose files of the given objects to disk. Objects already in a pack (or not
    /// present) are skipped.
    pub fn sync_objects(&self, ids: impl IntoIterator<Item = ObjectId>) -> Result<()> {
        self.sync_files(ids.into_iter().map(|id| self.loose_path(id)).collect())
    }

    pub(super) fn loose_path(&self, id: ObjectId) -> PathBuf {
        let hex = id.to_string();
        self.git_dir.join("objects").join(&hex[..2]).join(&hex[2..])
    }
    /// Forces every object file written through this store since the last call (loose trees,
    /// commits and blobs, packs and their indexes) to disk. Called before a ref is pointed at
    /// new objects, so that a crash of the machine can never leave a ref naming lost objects.
    pub fn sync_written(&self) -> Result<()> {
        let files = std::mem::take(&mut *self.unsynced.lock().unwrap_or_else(|p| p.into_inner()));
        self.sync_files(files)
    }

    /// Forces the file of a loose ref (and its directory entry) to disk after it moved.
    pub fn sync_ref(&self, name: &str) -> Result<()> {
        self.sync_files(vec![self.git_dir.join(name)])
    }

    /// Forces loose refs to disk with their directories, and the entries of those directories
    /// in theirs up to `refs/` whenever a directory is new since this store last synced it
    /// (ref directories come and go with their refs): a ref that `sync` returned for is there
    /// after a machine crash, for the price of one fsync of the file and one of its directory.
    pub fn sync_refs(&self, names: &[String]) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        if names.is_empty() {
            return Ok(());
        }
        let files: Vec<PathBuf> = names.iter().map(|n| self.git_dir.join(n)).collect();
        let refs = self.git_dir.join("refs");
        let mut dirs = std::collections::BTreeSet::new();
        for f in &files {
            if let Some(d) = f.parent() {
                dirs.insert(d.to_owned());
            }
        }
        let many = files.len() > SYNCFS_THRESHOLD;
        self.sync_files(files)?;
        let mut synced = self
            .synced_ref_dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for dir in dirs {
            let mut child = dir;
            while child != refs && child.starts_with(&refs) {
                let Some(parent) = child.parent().map(Path::to_owned) else {
                    break;
                };
                let Ok(ino) = std::fs::metadata(&child).map(|m| m.ino()) else {
                    break;
                };
                if synced.get(&child) != Some(&ino) {
                    // After a syncfs only the bookkeeping is left to do.
                    if !many && let Ok(d) = std::fs::File::open(&parent) {
                        d.sync_all().map_err(|source| StoreError::Io {
                            path: parent.clone(),
                            source,
                        })?;
                    }
                    synced.insert(child.clone(), ino);
                }
                child = parent;
            }
        }
        Ok(())
    }

    /// fsyncs `files` and their directories (missing files are skipped); beyond
    /// [`SYNCFS_THRESHOLD`] files, one syncfs(2) of the filesystem instead.
    pub(super) fn sync_files(&self, files: Vec<PathBuf>) -> Result<()> {
        if files.is_empty() {
            return Ok(());
        }
        crate::fault::check("object fsync").map_err(|source| StoreError::Io {
            path: self.git_dir.clone(),
            source,
        })?;
        if files.len() > SYNCFS_THRESHOLD {
            // One syncfs(2) instead of thousands of fsync(2)s: each fsync forces its own
            // filesystem journal commit (~5 ms here), so 3,000 objects took 17 s; syncfs
            // writes the same data back in one pass.
            let objects = self.git_dir.join("objects");
            let dir = std::fs::File::open(&objects).map_err(|source| StoreError::Io {
                path: objects.clone(),
                source,
            })?;
            return nix::unistd::syncfs(&dir).map_err(|e| StoreError::Io {
                path: objects,
                source: e.into(),
            });
        }
        let mut dirs = std::collections::BTreeSet::new();
        for path in files {
            match std::fs::File::open(&path) {
                Ok(f) => f.sync_all().map_err(|source| StoreError::Io {
                    path: path.clone(),
                    source,
                })?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(StoreError::Io { path, source }),
            }
            if let Some(dir) = path.parent() {
                dirs.insert(dir.to_owned());
            }
        }
        for dir in dirs {
            if let Ok(d) = std::fs::File::open(&dir) {
                d.sync_all()
                    .map_err(|source| StoreError::Io { path: dir, source })?;
            }
        }
        Ok(())
    }
}
