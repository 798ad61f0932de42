//! Changing the working layer: set, delete and rename, each checked against the visible state
//! and journaled before it is applied, under the journal lock (so journal order is overlay
//! order). What a set or a delete does to the overlay is here too: replay applies the same.

use crate::db::journal::{self, Record};
use crate::db::journaling::{apply_record, set_record};
use crate::db::meta::MetaRecord;
use crate::db::working::Working;
use crate::db::{Change, DbError, GitDb, JournalState, Key, Result, StagedValue, State, Visible};
use crate::store::{Bytes, ObjectId, ValueMode};

/// Values up to this size are carried in the journal and written at commit (as one pack when
/// there are many); larger ones are written as blobs when set.
const INLINE_MAX: usize = 64 << 10;
/// Past this many bytes of pending small values, new ones are written as blobs when set.
const PENDING_MAX: usize = 256 << 20;

impl GitDb {
    /// Sets `key` to `value` (mode 100644).
    pub fn set(&self, key: &str, value: &[u8]) -> Result<()> {
        self.set_with_mode(key, value, ValueMode::Regular)
    }

    /// Sets `key` to `value` with a git mode (regular, executable, symlink).
    pub fn set_with_mode(&self, key: &str, value: &[u8], mode: ValueMode) -> Result<()> {
        self.check_writable()?;
        let key = Key::parse_value(key)?;
        let size = value.len() as u64;
        if value.len() <= INLINE_MAX && self.read_state().pending.bytes < PENDING_MAX {
            let id = self.store.hash_blob(value)?;
            let mut js = self.lock_journal();
            self.check_can_hold_value(&key)?;
            self.append(
                &mut js,
                &Record::SetInline {
                    key: key.as_str().to_owned(),
                    mode,
                    data: value.to_vec(),
                },
            )?;
            {
                let mut st = self.write_state();
                st.pending.insert(id, Bytes::from(value));
                apply_set(
                    &mut st.working,
                    key.as_str().to_owned(),
                    StagedValue { id, mode, size },
                );
            }
            return self.maybe_compact(&mut js);
        }
        // Checked again under the journal lock; this early check only avoids writing a blob
        // for a set that cannot succeed.
        self.check_can_hold_value(&key)?;
        let id = self.store.write_blob(value)?;
        self.stage(key, StagedValue { id, mode, size })
    }

    /// Sets `key` to a blob already written to the store (e.g. streamed by the mount).
    pub fn set_blob(&self, key: &str, id: ObjectId, mode: ValueMode) -> Result<()> {
        self.check_writable()?;
        // A small value still waiting for its commit (e.g. re-staged by a chmod) is not in the
        // object database yet: stage its bytes again, so the journal holds them.
        let waiting = self.read_state().pending.blobs.get(&id).cloned();
        if let Some(data) = waiting {
            return self.set_with_mode(key, &data, mode);
        }
        let key = Key::parse_value(key)?;
        let size = self.store.blob_size(id)?;
        self.stage(key, StagedValue { id, mode, size })
    }

    fn stage(&self, key: Key, value: StagedValue) -> Result<()> {
        let mut js = self.lock_journal();
        self.check_can_hold_value(&key)?;
        self.protect(&mut js, &[value.id])?;
        self.append(&mut js, &set_record(key.as_str(), value))?;
        js.unsynced.push(value.id);
        apply_set(
            &mut self.write_state().working,
            key.as_str().to_owned(),
            value,
        );
        self.maybe_compact(&mut js)?;
        Ok(())
    }

    /// A value may go at `key` if no ancestor is a value and `key` is not a directory.
    fn check_can_hold_value(&self, key: &Key) -> Result<()> {
        self.check_parents_are_dirs(key)?;
        if let Visible::Dir = self.resolve(key)? {
            return Err(DbError::IsDirectory { key: key.clone() });
        }
        Ok(())
    }

    /// Deletes the value at `key`. A directory is an error: use [`GitDb::delete_prefix`].
    pub fn delete(&self, key: &str) -> Result<()> {
        self.check_writable()?;
        let key = Key::parse_value(key)?;
        let mut js = self.lock_journal();
        let in_head = match self.resolve(&key)? {
            Visible::Value(_, committed) => committed,
            Visible::Dir => return Err(DbError::IsDirectory { key }),
            Visible::Absent => return Err(DbError::NotFound { key }),
        };
        self.journal_delete(&mut js, &key, in_head)
    }

    /// Deletes everything below and at `prefix` (the root: every key). Returns an error if
    /// nothing is there.
    pub fn delete_prefix(&self, prefix: &str) -> Result<()> {
        self.check_writable()?;
        let key = Key::parse(prefix)?;
        let mut js = self.lock_journal();
        if !key.is_root() && matches!(self.resolve(&key)?, Visible::Absent) {
            return Err(DbError::NotFound { key });
        }
        self.journal_delete(&mut js, &key, false)
    }

    /// Stages the delete of `key`; `in_head`: the head is known to hold the value deleted, so
    /// its tombstone is needed without looking.
    fn journal_delete(&self, js: &mut JournalState, key: &Key, in_head: bool) -> Result<()> {
        self.append(
            js,
            &Record::Delete {
                key: key.as_str().to_owned(),
            },
        )?;
        apply_delete(&mut self.write_state().working, key.as_str());
        if !in_head {
            self.drop_needless_tombstone(js, key.as_str())?;
        }
        // After the journal: a crash between the two leaves metadata for a name that is gone
        // (harmless: a new file there gets its own), never a value without its metadata.
        self.follow_meta(MetaRecord::Staged(Box::new(MetaRecord::Drop {
            path: key.as_str().to_owned(),
        })));
        self.maybe_compact(js)
    }

    /// A tombstone only hides what the head holds. One for a path the head lacks (a file
    /// created and removed before any commit, a temp file renamed away) is dropped, so the
    /// working layer, `status` and the next commit do not grow with names no commit ever had.
    /// Kept while a commit is under way (the commit may be adding that path to the head) and
    /// for the root. The caller holds the journal lock, so the head cannot be adopted
    /// meanwhile.
    fn drop_needless_tombstone(&self, _js: &mut JournalState, path: &str) -> Result<()> {
        let Ok(_no_commit) = self.commit_lock.try_lock() else {
            return Ok(());
        };
        let head_tree = self.read_state().head_tree;
        if self.hides_nothing(head_tree, path)? {
            // The caller's journal lock serializes every change of the working layer: the
            // tombstone just staged is still there.
            self.write_state().working.remove(path);
        }
        Ok(())
    }

    /// Whether a tombstone at `path` hides nothing of the tree `head_tree` (the root's always
    /// matters: it hides everything).
    pub(super) fn hides_nothing(&self, head_tree: ObjectId, path: &str) -> Result<bool> {
        Ok(!path.is_empty() && self.store.lookup(head_tree, path)?.is_none())
    }

    /// Renames a value or a whole directory atomically (one journal record): `from` disappears
    /// and `to` holds what it held. Like rename(2): a value replaces a value at `to`, a directory
    /// may only go where nothing is (directories are never empty here), and nothing may move
    /// below itself.
    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.check_writable()?;
        let from = Key::parse_value(from)?;
        let to = Key::parse_value(to)?;
        if from.is_ancestor_of(&to) {
            return Err(DbError::InvalidRename {
                from,
                to,
                reason: "the target is inside the source",
            });
        }
        let mut js = self.lock_journal();
        let source = self.resolve(&from)?;
        if let Visible::Absent = source {
            return Err(DbError::NotFound { key: from });
        }
        let from_in_head = matches!(source, Visible::Value(_, true));
        if from == to {
            return Ok(());
        }
        let mut batch = vec![Record::Delete {
            key: from.as_str().to_owned(),
        }];
        match (source, self.resolve(&to)?) {
            (_, Visible::Dir) if to.is_ancestor_of(&from) => {
                return Err(DbError::NotEmpty { key: to });
            }
            (Visible::Value(..), Visible::Dir) => return Err(DbError::IsDirectory { key: to }),
            (Visible::Dir, Visible::Value(..)) => return Err(DbError::NotADirectory { key: to }),
            (Visible::Dir, Visible::Dir) => return Err(DbError::NotEmpty { key: to }),
            (Visible::Value(v, _), _) => {
                self.check_parents_are_dirs(&to)?;
                batch.push(set_record(to.as_str(), v));
            }
            (Visible::Dir, _) => {
                self.check_parents_are_dirs(&to)?;
                for (path, v) in self.visible_values(&from)? {
                    let rel = &path[from.as_str().len() + 1..];
                    batch.push(set_record(&crate::paths::join(to.as_str(), rel), v));
                }
            }
            (Visible::Absent, _) => unreachable!("checked above"),
        }
        // Values moved to a new name keep their blobs: those in the object database need a
        // staged ref like any other set (committed ones too: the head may move on without them).
        let stored: Vec<ObjectId> = {
            let st = self.read_state();
            batch
                .iter()
                .filter_map(|r| match r {
                    Record::Set { id, .. } => Some(journal::from_raw(id)),
                    _ => None,
                })
                .filter(|id| !st.pending.blobs.contains_key(id))
                .collect()
        };
        self.protect(&mut js, &stored)?;
        let record = Record::Batch(batch);
        self.append(&mut js, &record)?;
        let mut st = self.write_state();
        let State {
            working, pending, ..
        } = &mut *st;
        apply_record(&self.store, working, pending, record)?;
        drop(st);
        if !from_in_head {
            self.drop_needless_tombstone(&mut js, from.as_str())?;
        }
        // After the journal, as for a delete: a crash between the two leaves the replaced
        // name's metadata on the new value, never the moved value with none.
        self.follow_meta(MetaRecord::Staged(Box::new(MetaRecord::Move {
            from: from.as_str().to_owned(),
            to: to.as_str().to_owned(),
        })));
        self.maybe_compact(&mut js)
    }

    fn check_parents_are_dirs(&self, key: &Key) -> Result<()> {
        // Nearest first: a visible directory's ancestors are all directories (a value hides
        // everything below it), so the first ancestor that exists settles it — usually the
        // parent, in one lookup.
        let mut cur = key.parent();
        while let Some(ancestor) = cur {
            if ancestor.is_root() {
                return Ok(());
            }
            match self.resolve(&ancestor)? {
                Visible::Dir => return Ok(()),
                Visible::Value(..) => {
                    return Err(DbError::ParentIsValue {
                        key: key.clone(),
                        parent: ancestor,
                    });
                }
                Visible::Absent => cur = ancestor.parent(),
            }
        }
        Ok(())
    }

    /// Every visible value below the directory `prefix`, with what it holds.
    fn visible_values(&self, prefix: &Key) -> Result<Vec<(String, StagedValue)>> {
        let mut out = Vec::new();
        for (path, _) in self.list_recursive(prefix.as_str())? {
            if let Visible::Value(v, _) = self.resolve(&Key::parse_value(&path)?)? {
                out.push((path, v));
            }
        }
        Ok(out)
    }
}

/// Records a delete of `path` (value or prefix): everything staged below it is dropped and one
/// tombstone hides what is committed there.
pub(super) fn apply_delete(working: &mut Working, path: &str) {
    if path.is_empty() {
        working.clear();
    } else {
        clear_below(working, path);
    }
    working.insert(path.to_owned(), Change::Delete);
}

/// Records a set of `path`. A value can only go where no directory is visible, so what is
/// staged below it can only be tombstones of a directory it replaces: the value hides that
/// directory itself, and they go (a commit then has no edits below a value).
pub(super) fn apply_set(working: &mut Working, path: String, value: StagedValue) {
    clear_below(working, &path);
    working.insert(path, Change::Set(value));
}

/// Drops everything staged strictly below `path` (not the root).
fn clear_below(working: &mut Working, path: &str) {
    let below: Vec<String> = working.under(path).map(|(k, _)| k.clone()).collect();
    for k in below {
        working.remove(&k);
    }
}
