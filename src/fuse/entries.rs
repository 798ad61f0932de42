//! Operations that add or remove a name in a directory: mknod, mkdir, symlink, unlink, rmdir,
//! and the pending file a `create` registers (`create` itself, which also opens the file, is
//! in `open.rs`).

use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use fuser::{Errno, FileAttr, INodeNo};

use super::attrs::{node_type, value_mode};
use super::errno::{db_err, lookup_err};
use super::fscore::{Caller, FsCore};
use super::shared::lock;
use crate::paths::{below, split};

use crate::db::{DbError, Key, Meta, NodeType, Stat, ValueMode};

impl FsCore {
    /// MKNOD: an empty regular file (nothing else has a place in a key-value store).
    pub(crate) fn mknod(
        &self,
        caller: &Caller,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
    ) -> Result<(FileAttr, Duration), Errno> {
        if mode & libc::S_IFMT != libc::S_IFREG {
            // Device nodes, fifos and sockets have no place in a key-value store.
            return Err(Errno::EPERM);
        }
        self.new_child(parent, name).and_then(|path| {
            let meta = self.creator_meta(caller, split(&path).0, mode, umask, false);
            self.create_value(&path, meta)?;
            self.getattr_path(&path)
        })
    }

    /// MKDIR: a directory this layer keeps until a key is made below it (git stores none).
    pub(crate) fn mkdir(
        &self,
        caller: &Caller,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
    ) -> Result<(FileAttr, Duration), Errno> {
        self.new_child(parent, name).and_then(|path| {
            Key::parse_value(&path).map_err(|e| db_err(&DbError::Key(e)))?;
            if self.db().stat(&path).map_err(|e| db_err(&e))?.is_some() || self.is_empty_dir(&path)
            {
                return Err(Errno::EEXIST);
            }
            let meta = self.creator_meta(caller, split(&path).0, mode, umask, true);
            self.record_meta(&path, NodeType::Dir, meta)?;
            lock(&self.s.empty_dirs).insert(path.clone());
            self.s.dir_made(&path);
            self.created(&path);
            self.getattr_path(&path)
        })
    }

    /// UNLINK: deletes the key (or drops a file still being written).
    pub(crate) fn unlink(&self, parent: INodeNo, name: &OsStr) -> Result<(), Errno> {
        self.writable_child(parent, name).and_then(|path| {
            let in_store = matches!(self.db().stat(&path), Ok(Some(_)));
            if self.is_empty_dir(&path) && !in_store {
                return Err(Errno::EISDIR);
            }
            if !in_store && lock(&self.s.pending).remove(&path).is_some() {
                // A file still being written: it never reached the store.
                if let Err(e) = self.db().drop_meta(&path) {
                    // The file is gone; its metadata lingers for a free name (a new file there
                    // gets its own).
                    log::warn!("unlink /{path}: {e}");
                }
            } else {
                self.db().delete(&path).map_err(|e| lookup_err(&e))?;
            }
            // The unlinked file's number no longer has a path: handles still open on it write
            // nowhere, and a new file here gets a new number.
            lock(&self.s.inodes).detach(&path);
            self.keep_parent_dirs(&path);
            self.removed(&path);
            Ok(())
        })
    }

    /// RMDIR: only a directory without keys (one this layer keeps) can go.
    pub(crate) fn rmdir(&self, parent: INodeNo, name: &OsStr) -> Result<(), Errno> {
        self.writable_child(parent, name).and_then(|path| {
            // Pending before the db (see `Shared::pending`).
            let pending = self.pending_mode(&path).is_some();
            match self.db().stat(&path).map_err(|e| lookup_err(&e))? {
                Some(Stat::Dir) => return Err(Errno::ENOTEMPTY),
                Some(Stat::Value { .. }) => return Err(Errno::ENOTDIR),
                None => {}
            }
            if pending {
                return Err(Errno::ENOTDIR);
            }
            if self.has_local_children(&path) {
                return Err(Errno::ENOTEMPTY);
            }
            let mut dirs = lock(&self.s.empty_dirs);
            if !dirs.contains(&path) {
                return Err(Errno::ENOENT);
            }
            if dirs.range::<str, _>(below(&path)).next().is_some() {
                return Err(Errno::ENOTEMPTY);
            }
            dirs.remove(&path);
            drop(dirs);
            if let Err(e) = self.db().drop_meta(&path) {
                // The directory is gone; its metadata lingers for a name that is free (a
                // new directory there gets its own).
                log::warn!("rmdir /{path}: {e}");
            }
            self.s.subdir_added(split(&path).0, -1);
            self.keep_parent_dirs(&path);
            self.removed(&path);
            Ok(())
        })
    }

    /// SYMLINK: a value of git mode 120000 holding `target`.
    pub(crate) fn symlink(
        &self,
        caller: &Caller,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
    ) -> Result<(FileAttr, Duration), Errno> {
        self.new_child(parent, link_name).and_then(|path| {
            if self.db().stat(&path).map_err(|e| db_err(&e))?.is_some() || self.is_empty_dir(&path)
            {
                return Err(Errno::EEXIST);
            }
            use std::os::unix::ffi::OsStrExt;
            let meta = self.creator_meta(caller, split(&path).0, 0o777, 0, false);
            self.record_meta(&path, NodeType::Symlink, meta)?;
            self.db()
                .set_with_mode(&path, target.as_os_str().as_bytes(), ValueMode::Symlink)
                .map_err(|e| db_err(&e))?;
            self.created(&path);
            self.key_added(&path);
            self.getattr_path(&path)
        })
    }
}

impl FsCore {
    /// Creates an empty value at `path` (mknod) with `meta` as its creator asked.
    pub(super) fn create_value(&self, path: &str, meta: Meta) -> Result<ValueMode, Errno> {
        self.check_writable()?;
        let vmode = value_mode(meta.mode);
        if self.is_empty_dir(path) {
            return Err(Errno::EEXIST);
        }
        // Before the name appears, so it never shows someone else's (or no) metadata.
        self.record_meta(path, node_type(vmode), meta)?;
        self.db()
            .set_with_mode(path, b"", vmode)
            .map_err(|e| db_err(&e))?;
        self.created(path);
        self.key_added(path);
        Ok(vmode)
    }

    /// Registers a file made by `create`: the store gets it when its writer flushes.
    pub(super) fn create_pending(&self, path: &str, meta: Meta) -> Result<ValueMode, Errno> {
        self.check_writable()?;
        let vmode = value_mode(meta.mode);
        Key::parse_value(path).map_err(|e| db_err(&DbError::Key(e)))?;
        if self.is_empty_dir(path) {
            return Err(Errno::EEXIST);
        }
        self.record_meta(path, node_type(vmode), meta)?;
        lock(&self.s.pending).insert(path.to_owned(), vmode);
        self.created(path);
        Ok(vmode)
    }
}
