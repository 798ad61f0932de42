//! The map and its log as the db holds them, behind one lock: a change is logged, then
//! applied, with the undo entries a rollback of the working layer needs.
//!
//! Apart from the log because this is the policy (what is worth logging, when a commit
//! settles the staged records, how a rollback restores them), the log only the file.

use std::path::Path;

use super::log_file::{note_undo, record_path};
use super::{Meta, MetaError, MetaLog, MetaMap, MetaRecord, Undo};

/// The map and its log, as the db holds them (behind one lock: see the db's lock order).
pub struct MetaStore {
    // Visible to the meta tests, which check the log against the map.
    pub(super) map: MetaMap,
    /// How to undo the staged records since the last commit (see [`MetaRecord::Staged`]).
    pub(super) undo: Undo,
    /// `None` for a read-only handle.
    pub(super) log: Option<MetaLog>,
}

impl MetaStore {
    /// Opens the log at `path` for writing, or only reads it (`read_only`).
    pub fn open(path: &Path, read_only: bool) -> Result<MetaStore, MetaError> {
        if read_only {
            let (map, undo) = MetaLog::read(path)?;
            return Ok(MetaStore {
                map,
                undo,
                log: None,
            });
        }
        let (mut log, map, undo) = MetaLog::open(path)?;
        if log.wants_compaction(&map, &undo)
            && let Err(e) = log.compact(&map, &undo)
        {
            log::warn!("metadata log compaction failed, retried later: {e}");
        }
        Ok(MetaStore {
            map,
            undo,
            log: Some(log),
        })
    }

    pub fn get(&self, path: &str) -> Option<Meta> {
        self.map.get(path)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Logs `record`, then applies it. A record that changes nothing is not logged, so the
    /// deletes and renames of paths that never had metadata (nearly all of them) cost no I/O.
    pub fn apply(&mut self, record: MetaRecord) -> Result<(), MetaError> {
        if !self.changes(&record) {
            return Ok(());
        }
        let Some(log) = self.log.as_mut() else {
            return Err(MetaError::ReadOnly {
                path: record_path(&record),
            });
        };
        log.append(&record)?;
        note_undo(&mut self.undo, &self.map, &record);
        self.map.apply(&record);
        if log.wants_compaction(&self.map, &self.undo)
            && let Err(e) = log.compact(&self.map, &self.undo)
        {
            log::warn!("metadata log compaction failed, retried later: {e}");
        }
        Ok(())
    }

    /// How many undo entries a rollback would apply now (a commit's mark, see
    /// [`MetaStore::settle`]).
    pub fn undo_len(&self) -> usize {
        self.undo.len()
    }

    /// A commit is done: forget the undo entries staged before its snapshot (`mark`, what
    /// [`MetaStore::undo_len`] said then); later ones still belong to the working layer.
    pub fn settle(&mut self, mark: usize) -> Result<(), MetaError> {
        if self.undo.is_empty() {
            return Ok(());
        }
        let keep = self.undo.len().saturating_sub(mark) as u64;
        self.apply(MetaRecord::Settled { keep })
    }

    /// The working layer was dropped: the names its deletes and renames took away are back,
    /// so their metadata comes back too (newest first), then nothing is left to undo.
    pub fn rollback(&mut self) -> Result<(), MetaError> {
        while let Some(entry) = self.undo.pop() {
            for r in entry {
                if let Err(e) = self.apply(r) {
                    self.undo.clear();
                    return Err(e);
                }
            }
        }
        self.apply(MetaRecord::Settled { keep: 0 })
    }

    /// Whether applying `record` would change the map.
    fn changes(&self, record: &MetaRecord) -> bool {
        match record {
            MetaRecord::Staged(inner) => self.changes(inner),
            MetaRecord::Settled { keep } => (*keep as usize) < self.undo.len(),
            MetaRecord::Undo(_) => true,
            MetaRecord::Set { path, meta } => self.map.get(path) != *meta,
            MetaRecord::Drop { path } => !self.map.at_or_below(path).is_empty(),
            MetaRecord::Move { from, to } => {
                from != to
                    && !(self.map.at_or_below(from).is_empty()
                        && self.map.at_or_below(to).is_empty())
            }
        }
    }

    pub fn sync(&mut self) -> Result<(), MetaError> {
        match self.log.as_mut() {
            Some(log) => log.sync(),
            None => Ok(()),
        }
    }
}
