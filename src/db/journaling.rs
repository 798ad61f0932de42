//! The glue between the working layer and its [`journal`]: appending records, compacting the
//! file, rewriting or resetting it once a commit has moved the head, `sync`, and applying
//! records back to a working layer (at open, and as a read-only handle follows the writer).
//! The file format itself is journal.rs's.

use crate::db::error::journal_err;
use crate::db::journal::{self, Record};
use crate::db::staged::staged_ids;
use crate::db::working::Working;
use crate::db::write::{apply_delete, apply_set};
use crate::db::{Change, DbError, GitDb, JournalState, Pending, Result, StagedValue};
use crate::store::{Bytes, ObjectId, Store};

/// The journal is compacted once it holds this many records more than the working layer has
/// entries, so a key rewritten all day without a commit costs neither disk nor memory.
const COMPACT_SLACK: usize = 4096;

impl GitDb {
    /// Rewrites the journal from the working layer once overwritten and deleted entries make
    /// up most of it, forgets pending values nothing refers to any more, and drops the refs of
    /// overwritten large values. A compaction that fails (a full disk) is only logged and
    /// tried again after as many appends again: the change that triggered it is journaled.
    pub(super) fn maybe_compact(&self, js: &mut JournalState) -> Result<()> {
        let live = self.read_state().working.len();
        if js.appended <= live + COMPACT_SLACK {
            return Ok(());
        }
        let (head, working, pending) = {
            let st = self.read_state();
            let referenced = staged_ids(&st.working);
            let mut pending = st.pending.clone();
            pending.retain(|id| referenced.contains(id));
            (st.head, st.working.clone(), pending)
        };
        if let Err(e) = self.rewrite_journal(js, head, &working, &pending) {
            log::warn!("journal compaction failed, retried later: {e}");
            js.appended = live;
            return Ok(());
        }
        self.write_state().pending = pending;
        self.drop_unstaged_refs(js);
        Ok(())
    }

    /// Appends `record` to the journal. A journal left stale by a commit is first rewritten
    /// from the working layer, so the record never follows changes already committed.
    pub(super) fn append(&self, js: &mut JournalState, record: &Record) -> Result<()> {
        if js.journal.is_none() {
            return Err(DbError::ReadOnly {
                path: self.git_dir().to_owned(),
            });
        }
        if js.stale {
            self.rewrite_from_state(js)?;
        }
        let Some(j) = js.journal.as_mut() else {
            return Err(DbError::ReadOnly {
                path: self.git_dir().to_owned(),
            });
        };
        j.append(record).map_err(journal_err(j.path()))?;
        js.appended += 1;
        // Autocommit's quiet period starts again (see [`super::tasks`]).
        self.note_activity();
        Ok(())
    }

    /// Makes every change made so far durable: the blobs, the refs that keep them from `git
    /// gc`, then the journal (so a journal naming a blob is never on disk before either).
    pub fn sync(&self) -> Result<()> {
        let mut js = self.lock_journal();
        let ids = std::mem::take(&mut js.unsynced);
        if let Err(e) = self.store.sync_objects(ids.iter().copied()) {
            js.unsynced.extend(ids);
            return Err(e.into());
        }
        let refs = std::mem::take(&mut js.unsynced_refs);
        if let Err(e) = self.store.sync_refs(&refs) {
            js.unsynced_refs.extend(refs);
            return Err(e.into());
        }
        if js.stale {
            self.rewrite_from_state(&mut js)?;
        }
        if let Some(j) = js.journal.as_mut() {
            j.sync().map_err(journal_err(j.path()))?;
        }
        // After the journal: metadata of a rename is logged after its journal record.
        self.lock_meta().sync()?;
        Ok(())
    }

    fn rewrite_journal(
        &self,
        js: &mut JournalState,
        head: Option<ObjectId>,
        working: &Working,
        pending: &Pending,
    ) -> Result<()> {
        let Some(j) = js.journal.as_mut() else {
            return Ok(());
        };
        let mut records = vec![Record::base(head)];
        records.extend(working_records(working, pending));
        j.rewrite(&records).map_err(journal_err(j.path()))?;
        js.appended = 0;
        js.stale = false;
        Ok(())
    }

    /// Rewrites a stale journal from the in-memory working layer and head.
    pub(super) fn rewrite_from_state(&self, js: &mut JournalState) -> Result<()> {
        let (head, working, pending) = {
            let st = self.read_state();
            (st.head, st.working.clone(), st.pending.clone())
        };
        self.rewrite_journal(js, head, &working, &pending)
    }

    /// Makes the journal hold `remaining` on top of `head` once a commit has moved the ref (or
    /// found nothing to commit): a reset in place when nothing remains (the usual case, which
    /// needs no free space), else a rewrite. Never fails the commit, which has happened. If
    /// this fails the old file stays — every change it holds is either in the head now or
    /// still in the working layer, so nothing is lost — and it is marked stale: rewritten from
    /// memory before the next append, sync or merge, so no record ever follows it and no merge
    /// lands on top of it. Until then a restart replays it over the new head: when nothing
    /// remained (a reset that failed) replay recognises it as committed and drops it; otherwise
    /// the committed changes are staged again over a head that already holds them, which
    /// changes no visible value and commits to nothing (only a stock-git commit of the same
    /// keys in that window would be overridden by them).
    pub(super) fn settle_journal(
        &self,
        js: &mut JournalState,
        head: Option<ObjectId>,
        remaining: &Working,
        pending: &Pending,
    ) {
        let result = if remaining.is_empty() {
            match js.journal.as_mut() {
                None => Ok(()),
                Some(j) => j.reset(Record::base(head)).map_err(journal_err(j.path())),
            }
        } else {
            self.rewrite_journal(js, head, remaining, pending)
        };
        match result {
            Ok(()) => {
                js.appended = 0;
                js.stale = false;
            }
            Err(e) => {
                log::warn!(
                    "after the commit the journal could not be rewritten (retried before the next change): {e}"
                );
                js.stale = true;
            }
        }
    }
}

/// Applies one journal record (other than `Base`) to the working layer.
pub(super) fn apply_record(
    store: &Store,
    working: &mut Working,
    pending: &mut Pending,
    record: Record,
) -> Result<()> {
    match record {
        Record::Base { .. } | Record::Generation(_) => {}
        Record::SetInline { key, mode, data } => {
            let id = store.hash_blob(&data)?;
            let size = data.len() as u64;
            pending.insert(id, Bytes::from(data));
            apply_set(working, key, StagedValue { id, mode, size });
        }
        Record::Set {
            key,
            mode,
            id,
            size,
        } => {
            let value = StagedValue {
                id: journal::from_raw(&id),
                mode,
                size,
            };
            apply_set(working, key, value);
        }
        Record::Delete { key } => apply_delete(working, &key),
        Record::Batch(records) => {
            for r in records {
                apply_record(store, working, pending, r)?;
            }
        }
    }
    Ok(())
}

/// Applies journal records in order; `base` ends as the head the last `Base` record names.
pub(super) fn apply_records(
    store: &Store,
    working: &mut Working,
    pending: &mut Pending,
    base: &mut Option<Option<ObjectId>>,
    records: Vec<Record>,
) -> Result<()> {
    for record in records {
        if let Record::Base { head } = record {
            *base = Some(head.as_ref().map(journal::from_raw));
        } else {
            apply_record(store, working, pending, record)?;
        }
    }
    Ok(())
}

pub(super) fn set_record(key: &str, v: StagedValue) -> Record {
    Record::Set {
        key: key.to_owned(),
        mode: v.mode,
        id: journal::raw_id(v.id),
        size: v.size,
    }
}

fn working_records<'a>(
    working: &'a Working,
    pending: &'a Pending,
) -> impl Iterator<Item = Record> + 'a {
    working.iter().map(|(key, change)| match change {
        Change::Set(v) => match pending.blobs.get(&v.id) {
            Some(data) => Record::SetInline {
                key: key.clone(),
                mode: v.mode,
                data: data.to_vec(),
            },
            None => set_record(key, *v),
        },
        Change::Delete => Record::Delete { key: key.clone() },
    })
}
