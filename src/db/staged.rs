//! Staged refs: a ref `refs/gitdb/staged/<id>` for each blob that only the working layer names,
//! so that `git gc` and `git prune` keep it until a commit does. A safety net beside the
//! journal, put right at open and trimmed lazily after commits, rollbacks and compactions.

use crate::db::working::Working;
use crate::db::{Change, GitDb, JournalState, Result};
use crate::store::ObjectId;

/// Where staged blobs' refs live: `refs/gitdb/staged/<hex id>`.
pub(super) const STAGED_REFS: &str = "refs/gitdb/staged/";

pub(super) fn staged_ref(id: ObjectId) -> String {
    format!("{STAGED_REFS}{id}")
}

impl GitDb {
    /// Makes the refs under `refs/gitdb/staged/` match the staged blobs after a replay: one for
    /// each staged blob (unless the blob is gone: then the next commit refuses with
    /// `MissingValue`), none for anything else. Failures only log: the refs are a safety net
    /// against `git gc`, and the next commit or rollback tries again.
    pub(super) fn reconcile_staged_refs(&self, js: &mut JournalState) {
        let on_disk = match self.store.refs_under(STAGED_REFS) {
            Ok(refs) => refs,
            Err(e) => {
                log::warn!("cannot list {STAGED_REFS}: {e}");
                return;
            }
        };
        let wanted = self.wanted_staged_refs();
        let mut have = std::collections::HashSet::new();
        let mut delete = Vec::new();
        for (name, target) in on_disk {
            let id = name
                .strip_prefix(STAGED_REFS)
                .and_then(|hex| ObjectId::from_hex(hex.as_bytes()).ok());
            match id {
                Some(id) if wanted.contains(&id) => {
                    if target == Some(id) {
                        have.insert(id);
                    }
                }
                _ => delete.push(name),
            }
        }
        let mut set = Vec::new();
        for &id in wanted.difference(&have) {
            if self.store.has_object(id) {
                set.push((staged_ref(id), id));
            } else {
                log::warn!("staged blob {id} is missing from the repository");
            }
        }
        match self
            .store
            .force_refs(&set, &delete, "gitdb: staged values after replay")
        {
            Ok(()) => {
                have.extend(set.iter().map(|(_, id)| *id));
                js.unsynced_refs
                    .extend(set.into_iter().map(|(name, _)| name));
            }
            Err(e) => log::warn!("cannot update {STAGED_REFS}: {e}"),
        }
        js.protected = have;
    }

    /// The staged blobs that need a ref: those already in the object database (a pending small
    /// value is only in the journal and memory until its commit writes it).
    fn wanted_staged_refs(&self) -> std::collections::HashSet<ObjectId> {
        let st = self.read_state();
        let mut ids = staged_ids(&st.working);
        ids.retain(|id| !st.pending.blobs.contains_key(id));
        ids
    }

    /// Gives each of `ids` that has none a ref `refs/gitdb/staged/<id>`, so that `git gc` and
    /// `git prune` keep the blob while only the working layer names it. Called before the set
    /// is journaled; `sync` makes the refs durable before the journal.
    pub(super) fn protect(&self, js: &mut JournalState, ids: &[ObjectId]) -> Result<()> {
        let mut new: Vec<ObjectId> = ids
            .iter()
            .copied()
            .filter(|id| !js.protected.contains(id))
            .collect();
        new.sort();
        new.dedup();
        if new.is_empty() {
            return Ok(());
        }
        let set: Vec<(String, ObjectId)> = new.iter().map(|&id| (staged_ref(id), id)).collect();
        self.store.force_refs(&set, &[], "gitdb: staged value")?;
        js.protected.extend(new);
        js.unsynced_refs
            .extend(set.into_iter().map(|(name, _)| name));
        Ok(())
    }

    /// Deletes the refs of blobs no longer staged (committed, overwritten, rolled back). Lazy
    /// and forgiving: a ref left behind only keeps a blob a little longer, and is tried again
    /// at the next commit, rollback or compaction, or dropped at the next open.
    pub(super) fn drop_unstaged_refs(&self, js: &mut JournalState) {
        if js.protected.is_empty() {
            return;
        }
        let wanted = self.wanted_staged_refs();
        let gone: Vec<ObjectId> = js
            .protected
            .iter()
            .copied()
            .filter(|id| !wanted.contains(id))
            .collect();
        if gone.is_empty() {
            return;
        }
        let names: Vec<String> = gone.iter().map(|&id| staged_ref(id)).collect();
        match self
            .store
            .force_refs(&[], &names, "gitdb: value no longer staged")
        {
            Ok(()) => {
                for id in gone {
                    js.protected.remove(&id);
                }
                let names: std::collections::HashSet<&String> = names.iter().collect();
                js.unsynced_refs.retain(|n| !names.contains(n));
            }
            Err(e) => log::warn!("cannot delete {} staged ref(s): {e}", names.len()),
        }
    }
}

/// The blobs the staged sets refer to.
pub(super) fn staged_ids(working: &Working) -> std::collections::HashSet<ObjectId> {
    working
        .values()
        .filter_map(|c| match c {
            Change::Set(v) => Some(v.id),
            Change::Delete => None,
        })
        .collect()
}
