//! Reading and writing through a handle, and storing an open file's bytes in the db when it
//! is flushed (the one `set` a written file becomes).

use std::time::SystemTime;

use fuser::{Errno, ReplyData};

use super::coherence::PREFILL_MAX;
use super::errno::{db_err, errno};
use super::fscore::FsCore;
use super::handles::{FlushData, OpenFile};
use super::shared::lock;

use crate::db::GitDb;
use crate::store::{ObjectId, ValueMode};

impl FsCore {
    /// Replies to a READ from `f`, lending the bytes to the reply instead of copying them out.
    pub(super) fn reply_read(&self, f: &mut OpenFile, offset: u64, size: u32, reply: ReplyData) {
        let mut reply = Some(reply);
        let result = f.read_with(self.db(), offset, size, |bytes| {
            if let Some(r) = reply.take() {
                r.data(bytes);
            }
        });
        if let (Err(e), Some(r)) = (result, reply.take()) {
            r.error(errno(e.errno()));
        }
    }

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
            self.s.set_last_error(format!("writing /{path}: {e}"));
            db_err(&e)
        })?;
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
