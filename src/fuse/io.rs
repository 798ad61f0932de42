//! Reading and writing through a handle, and storing an open file's bytes in the db when it
//! is flushed (the one `set` a written file becomes).

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use fuser::{Errno, FileHandle, INodeNo};

use super::coherence::PREFILL_MAX;
use super::control::{self, CtlNode};
use super::errno::{db_err, errno};
use super::fscore::FsCore;
use super::handles::{FlushData, OpenFile};
use super::open::Handle;
use super::shared::lock;

use crate::db::{Bytes, GitDb, ObjectId, ValueMode};

/// What a WRITE answers, and when.
pub(crate) enum Written {
    /// Reply now.
    Now(Result<u32, Errno>),
    /// A `ctl` command: reply from the notifier thread once the kernel's caches agree with
    /// its result (see [`FsCore::after_kernel`]).
    AfterKernel(Result<u32, Errno>),
}

impl FsCore {
    /// READ through handle `fh`: `send` gets the bytes at `offset` (lent from the open file,
    /// not copied out) and its result is returned. An error means `send` did not run.
    pub(crate) fn read<R>(
        &self,
        fh: FileHandle,
        offset: u64,
        size: u32,
        send: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, Errno> {
        let h = self.handle(fh)?;
        match &*h {
            Handle::Value { file, .. } => lock(file)
                .read_with(self.db(), offset, size, send)
                .map_err(|e| errno(e.errno())),
            Handle::Data(d) => {
                let start = (offset as usize).min(d.len());
                let end = start.saturating_add(size as usize).min(d.len());
                Ok(send(&d[start..end]))
            }
            Handle::Ctl => Ok(send(&[])),
        }
    }

    /// WRITE of `data` at `offset` through handle `fh`: into the open file (stored when it is
    /// flushed), or a command for `ctl`.
    pub(crate) fn write(&self, fh: FileHandle, offset: u64, data: &[u8]) -> Written {
        let h = match self.handle(fh) {
            Ok(h) => h,
            Err(e) => return Written::Now(Err(e)),
        };
        let result = match &*h {
            Handle::Ctl => {
                // A rollback replaces values without a write to their files.
                self.s.all_change();
                self.s.forget_nlinks();
                return Written::AfterKernel(self.ctl(data));
            }
            Handle::Value {
                writable: false, ..
            } => Err(Errno::EBADF),
            Handle::Value { ino, file, .. } => {
                let mut f = lock(file);
                if self.s.closing.load(Ordering::SeqCst) {
                    // The daemon is stopping and has stored open files for the last time.
                    Err(Errno::EIO)
                } else {
                    self.s.file_changes(*ino);
                    f.write(self.db(), offset, data)
                        .map_err(|e| errno(e.errno()))
                }
            }
            Handle::Data(_) => Err(Errno::EROFS),
        };
        Written::Now(result.map(|()| data.len() as u32))
    }

    /// FLUSH of handle `fh`: a writer's bytes become one `set`.
    pub(crate) fn flush(&self, fh: FileHandle) -> Result<(), Errno> {
        // FLUSH is sent on close(2) of a writer's descriptor (readers opt out); the RELEASE
        // that follows is asynchronous.
        self.handle(fh).and_then(|h| match &*h {
            Handle::Value {
                file,
                writable: true,
                ..
            } => self.flush_value(&mut lock(file)),
            _ => Ok(()),
        })
    }

    /// FSYNC of handle `fh`: stored, then the db made durable.
    pub(crate) fn fsync(&self, fh: FileHandle) -> Result<(), Errno> {
        self.handle(fh)
            .and_then(|h| match &*h {
                Handle::Value { file, .. } => self.flush_value(&mut lock(file)),
                _ => Ok(()),
            })
            .and_then(|()| self.db().sync().map_err(|e| db_err(&e)))
    }

    /// FSYNCDIR: the db made durable.
    pub(crate) fn fsyncdir(&self) -> Result<(), Errno> {
        self.db().sync().map_err(|e| db_err(&e))
    }

    /// READLINK of `ino`: the symlink's target (a history path's as of its commit).
    pub(crate) fn readlink(&self, ino: INodeNo) -> Result<Bytes, Errno> {
        self.path_of(ino).and_then(|path| {
            if let Some(CtlNode::History { commit, path }) = control::parse(&path) {
                return self
                    .db()
                    .get_at(&commit.to_string(), &path)
                    .map_err(|e| db_err(&e))?
                    .ok_or(Errno::ENOENT);
            }
            self.db()
                .get(&path)
                .map_err(|e| db_err(&e))?
                .ok_or(Errno::ENOENT)
        })
    }
}

impl FsCore {
    /// Stores what an open file holds in the db, as one set, if the db does not have it yet.
    pub(super) fn flush_value(&self, v: &mut OpenFile) -> Result<(), Errno> {
        if !v.dirty {
            return Ok(());
        }
        let path = match lock(&self.s.inodes).path(v.ino) {
            Some(p) => p.to_owned(),
            None => {
                // Unlinked (or replaced by a rename) while open: the data goes nowhere, as on
                // a disk filesystem.
                v.dirty = false;
                return Ok(());
            }
        };
        // Taken before the bytes are read, so any change racing with this flush shows.
        let token = self.s.change_token(v.ino);
        let db = &self.s.db;
        let mode = v.mode;
        let mut prefill = None;
        let result = match v.flush_data(&**db).map_err(|e| errno(e.errno()))? {
            FlushData::Mem(bytes) => {
                if mode != ValueMode::Symlink && !bytes.is_empty() && bytes.len() <= PREFILL_MAX {
                    prefill = Some(bytes.to_vec());
                }
                db.set_with_mode(&path, bytes, mode).map(|()| None)
            }
            FlushData::Stream(reader) => stream_set(db, &path, reader, mode).map(Some),
        };
        let stored = result.map_err(|e| {
            self.s
                .set_last_error(&format!("write /{path}"), format!("writing /{path}: {e}"));
            db_err(&e)
        })?;
        self.s.clear_write_error(&path);
        if let Some(id) = stored {
            v.stored(id);
        }
        v.dirty = false;
        lock(&self.s.pending).remove(&path);
        self.content_changed(&path, v.modified.unwrap_or_else(SystemTime::now));
        self.key_added(&path);
        // Put in the page cache once the last handle is released (see `release`).
        v.flushed = prefill.map(|data| (token, data));
        Ok(())
    }
}

pub(super) fn stream_set(
    db: &GitDb,
    path: &str,
    reader: std::io::Take<&mut std::fs::File>,
    mode: ValueMode,
) -> crate::db::Result<ObjectId> {
    db.set_stream(path, reader.limit(), reader, mode)
}
