//! The db's verbs on the node-local metadata (modes and owners, kept by [`meta`](super::meta)):
//! what the mount's chmod and chown call, and the hooks by which deletes, renames and commits
//! keep it in step with the names. `meta` is a leaf lock (see the lock order in the module docs).

use std::sync::MutexGuard;

use crate::db::meta::{MetaRecord, MetaStore};
use crate::db::{GitDb, Key, Meta, Result};

impl GitDb {
    /// Applies a metadata change that follows a change of names already made (a delete, a
    /// rename): that change stands, so a failure here is logged, not returned.
    pub(super) fn follow_meta(&self, record: MetaRecord) {
        if let Err(e) = self.lock_meta().apply(record.clone()) {
            log::error!("metadata not updated after {record:?}: {e}");
        }
    }

    /// A commit of the changes staged before `mark` is done (see [`MetaStore::settle`]).
    pub(super) fn settle_meta(&self, mark: usize) {
        if let Err(e) = self.lock_meta().settle(mark) {
            log::warn!("metadata: committed renames and deletes not settled: {e}");
        }
    }

    pub(super) fn lock_meta(&self) -> MutexGuard<'_, MetaStore> {
        self.meta.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The node-local metadata (mode bits, owner, group) of `path` (`""`: the root), if it
    /// differs from the mount's defaults. A map lookup in memory: no I/O.
    pub fn meta(&self, path: &str) -> Option<Meta> {
        self.lock_meta().get(path)
    }

    /// How many paths carry metadata that differs from the defaults.
    pub fn meta_len(&self) -> usize {
        self.lock_meta().len()
    }

    /// Sets (`Some`) or clears (`None`: back to the defaults) the metadata of `path`, which
    /// need not name a key (a directory made by mkdir, a file still being written). Logged
    /// before it is applied; durable after [`GitDb::sync`].
    pub fn set_meta(&self, path: &str, meta: Option<Meta>) -> Result<()> {
        self.check_writable()?;
        let key = Key::parse(path)?;
        let record = MetaRecord::Set {
            path: key.as_str().to_owned(),
            meta,
        };
        Ok(self.lock_meta().apply(record)?)
    }

    /// Drops the metadata at and below `path`: for names that the mount removes without the
    /// db (a directory made by mkdir, a file never flushed). [`GitDb::delete`] does it itself.
    pub fn drop_meta(&self, path: &str) -> Result<()> {
        self.check_writable()?;
        let key = Key::parse(path)?;
        let _js = self.lock_journal();
        let record = MetaRecord::Drop {
            path: key.as_str().to_owned(),
        };
        Ok(self.lock_meta().apply(record)?)
    }

    /// Moves the metadata at and below `from` to `to` (replacing `to`'s): for names that the
    /// mount renames without the db (directories made by mkdir). [`GitDb::rename`] does it
    /// itself.
    pub fn rename_meta(&self, from: &str, to: &str) -> Result<()> {
        self.check_writable()?;
        let from = Key::parse_value(from)?;
        let to = Key::parse_value(to)?;
        let _js = self.lock_journal();
        let record = MetaRecord::Move {
            from: from.as_str().to_owned(),
            to: to.as_str().to_owned(),
        };
        Ok(self.lock_meta().apply(record)?)
    }
}
