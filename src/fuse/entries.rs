//! Operations that add or remove a name in a directory: create (a pending file), mknod, mkdir,
//! symlink, unlink, rmdir.

use fuser::Errno;

use super::attrs::{node_type, value_mode};
use super::errno::db_err;
use super::fscore::FsCore;
use super::shared::lock;

use crate::db::{DbError, Key, Meta};
use crate::store::ValueMode;

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
