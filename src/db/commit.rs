//! Committing and rolling back the working layer: the overlay written as trees, one stamped
//! commit moved onto the branch by compare-and-swap (retried on top when something else moved
//! it), then the journal settled. `commit_lock` makes these one at a time.

use crate::db::journal::Record;
use crate::db::staged::staged_ids;
use crate::db::stamp::nearest_stamp;
use crate::db::working::Working;
use crate::db::{Change, CommitStamp, DbError, GitDb, HeadEvent, HeadOrigin, Hlc, Pending, Result};
use crate::store::{ObjectId, Signature, StoreError, TreeEdit};

/// What [`GitDb::commit`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// A new commit is the branch head.
    Committed { id: ObjectId, changed: usize },
    /// The working layer was empty, or changed nothing relative to the head.
    NothingToCommit,
}

/// From this many new blobs on, a commit writes them as one pack rather than loose files.
const PACK_MIN: usize = 32;

impl GitDb {
    /// Commits the working layer with `message` at physical time `now_ms` (Unix milliseconds;
    /// the hybrid clock never goes backwards whatever is passed).
    pub fn commit(&self, message: &str, now_ms: u64) -> Result<CommitOutcome> {
        let started = std::time::Instant::now();
        let outcome = self.commit_working(message, now_ms);
        if let Ok(CommitOutcome::Committed { .. }) = &outcome {
            self.metrics.committed(started.elapsed());
        }
        outcome
    }

    fn commit_working(&self, message: &str, now_ms: u64) -> Result<CommitOutcome> {
        self.check_writable()?;
        let _one_commit = self.commit_lock.lock().unwrap_or_else(|p| p.into_inner());
        let (mut head, mut head_tree, snapshot, pending, mut clock, hlc) = {
            let st = self.read_state();
            (
                st.head,
                st.head_tree,
                st.working.clone(),
                st.pending.clone(),
                st.clock.clone(),
                st.hlc,
            )
        };
        if snapshot.is_empty() {
            return Ok(CommitOutcome::NothingToCommit);
        }
        // Metadata moved by the deletes and renames in the snapshot stays moved once it is
        // committed; what is staged after this belongs to the next commit or rollback.
        let meta_mark = self.lock_meta().undo_len();
        // Never a tree naming a blob the repository lacks (deleted behind our back, e.g. by a
        // `git prune` of a blob without its staged ref): such a commit breaks fsck, clone and
        // gc. Pending small values are written just below.
        for (path, change) in &snapshot {
            if let Change::Set(v) = change
                && !pending.blobs.contains_key(&v.id)
                && !self.store.has_object(v.id)
            {
                return Err(DbError::MissingValue {
                    key: path.clone(),
                    id: v.id,
                });
            }
        }
        let written = self.materialize(&snapshot, &pending)?;
        const ATTEMPTS: u32 = 8;
        let mut committed = None;
        for _ in 0..ATTEMPTS {
            let tree = self.build_tree(head_tree, &snapshot)?;
            if tree == head_tree {
                break;
            }
            let mut new_clock = clock.clone();
            new_clock.increment(&self.node);
            let new_hlc = hlc.tick(now_ms);
            let stamp = CommitStamp {
                node: Some(self.node.clone()),
                clock: new_clock.clone(),
                hlc: Some(new_hlc),
            };
            let message = commit_message(message, &stamp);
            let sig = self.signature(new_hlc);
            let parents: Vec<ObjectId> = head.into_iter().collect();
            let id = self.store.write_commit(tree, &parents, &sig, &message)?;
            // The objects reach the disk before the ref names them, and the ref before the
            // journal forgets the changes: a machine crash loses no acknowledged commit.
            self.store.sync_written()?;
            match self.store.update_ref(
                &self.branch_ref,
                head,
                id,
                &format!("gitdb commit: {}", first_line(&message)),
            ) {
                Ok(()) => {
                    self.store.sync_ref(&self.branch_ref)?;
                    // The branch names the new pack's objects now: `git gc` may repack it.
                    self.store.release_packs();
                    #[cfg(test)]
                    if let Some(hook) = self
                        .after_ref_moved
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .take()
                    {
                        hook(self);
                    }
                    committed = Some((id, tree, new_clock, new_hlc));
                    break;
                }
                Err(StoreError::RefMoved { actual, .. }) => {
                    // Someone else (stock git, another tool) moved the branch: keep their commit
                    // as our parent and apply the same changes on top of it.
                    log::info!(
                        "{} moved to {actual:?} during commit; retrying on top",
                        self.branch_ref
                    );
                    head = actual;
                    head_tree = match actual {
                        Some(id) => self.store.commit_info(id)?.tree,
                        None => self.store.empty_tree(),
                    };
                    if let Some(id) = actual {
                        clock.merge(&nearest_stamp(&self.store, id)?.clock);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        if committed.is_none() && self.build_tree(head_tree, &snapshot)? != head_tree {
            return Err(DbError::CommitRace {
                branch: self.branch.clone(),
                attempts: ATTEMPTS,
            });
        }
        // What is left: changes made while we committed. Pending values the commit wrote are
        // in the object database now; the others stay in memory only if still referenced.
        let mut js = self.lock_journal();
        let (remaining, still_pending) = {
            let st = self.read_state();
            let mut remaining = st.working.clone();
            remaining.retain(|k, v| snapshot.get(k) != Some(v));
            let referenced = staged_ids(&remaining);
            let mut still_pending = st.pending.clone();
            still_pending.retain(|id| referenced.contains(id) && !written.contains(id));
            (remaining, still_pending)
        };
        match committed {
            None => {
                // Nothing changed relative to the head (which may have moved under us).
                self.settle_journal(&mut js, head, &remaining, &still_pending);
                let moved = {
                    let mut st = self.write_state();
                    st.working = remaining;
                    st.pending = still_pending;
                    st.head != head
                };
                self.drop_unstaged_refs(&mut js);
                self.settle_meta(meta_mark);
                drop(js);
                if moved {
                    self.adopt_head(head, HeadOrigin::External)?;
                }
                Ok(CommitOutcome::NothingToCommit)
            }
            Some((id, tree, new_clock, new_hlc)) => {
                // The commit has happened: from here nothing fails it.
                self.settle_journal(&mut js, Some(id), &remaining, &still_pending);
                let old_tree = {
                    let mut st = self.write_state();
                    let old_tree = st.head_tree;
                    st.working = remaining;
                    st.pending = still_pending;
                    st.head = Some(id);
                    st.head_tree = tree;
                    st.clock = new_clock;
                    st.hlc = new_hlc;
                    old_tree
                };
                // The branch keeps the committed blobs now.
                self.drop_unstaged_refs(&mut js);
                self.settle_meta(meta_mark);
                drop(js);
                self.publish(head, Some(id), old_tree, tree, HeadOrigin::LocalCommit);
                Ok(CommitOutcome::Committed {
                    id,
                    changed: snapshot.len(),
                })
            }
        }
    }

    /// Writes the pending small values `working` refers to into the object database: as one
    /// pack when there are many, as loose objects otherwise. Returns the ids now stored.
    fn materialize(
        &self,
        working: &Working,
        pending: &Pending,
    ) -> Result<std::collections::HashSet<ObjectId>> {
        let mut ids = std::collections::HashSet::new();
        let mut blobs = Vec::new();
        for change in working.values() {
            if let Change::Set(v) = change
                && let Some(data) = pending.blobs.get(&v.id)
                && ids.insert(v.id)
            {
                blobs.push(data.clone());
            }
        }
        if blobs.len() >= PACK_MIN {
            self.store
                .write_blobs_packed(blobs.iter().map(|b| &b[..]))?;
        } else {
            for data in &blobs {
                self.store.write_blob(data)?;
            }
        }
        Ok(ids)
    }

    fn signature(&self, hlc: Hlc) -> Signature {
        Signature {
            name: self.node.to_string(),
            email: format!("{}@gitdb", self.node),
            seconds: hlc.seconds(),
        }
    }

    /// The tree `base` with the working layer applied, written.
    fn build_tree(&self, base: ObjectId, working: &Working) -> Result<ObjectId> {
        self.working_tree(base, working, true)
    }

    /// The tree `base` with the working layer applied, written if `write` (else only its id).
    /// Entries are visited in path order, so a delete of a prefix comes before sets below it.
    pub(super) fn working_tree(
        &self,
        base: ObjectId,
        working: &Working,
        write: bool,
    ) -> Result<ObjectId> {
        let (base, skip_root) = match working.get("") {
            Some(Change::Delete) => (self.store.empty_tree(), true),
            _ => (base, false),
        };
        // Nothing is staged below a value (see `apply_set`), so no edit goes below one.
        let edits = working
            .iter()
            .filter(|(path, _)| !(skip_root && path.is_empty()))
            .map(|(path, change)| match change {
                Change::Set(v) => TreeEdit::Upsert {
                    path,
                    mode: v.mode,
                    id: v.id,
                },
                Change::Delete => TreeEdit::Remove { path },
            });
        Ok(if write {
            self.store.write_tree(base, edits)?
        } else {
            self.store.hash_tree(base, edits)?
        })
    }

    /// Drops every uncommitted change. Returns how many were dropped. Needs no free space: the
    /// journal is emptied in place.
    pub fn rollback(&self) -> Result<usize> {
        self.check_writable()?;
        // After any commit in progress: it has taken its snapshot, and a rollback must not
        // discard changes that then land in that commit anyway.
        let _one_commit = self.commit_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut js = self.lock_journal();
        let head = self.read_state().head;
        if let Some(j) = js.journal.as_mut()
            && let Err(source) = j.reset(Record::base(head))
        {
            // The working layer stays; whatever the file holds now, the next append or sync
            // rewrites it from memory first.
            let path = j.path().to_owned();
            js.stale = true;
            return Err(DbError::Journal { path, source });
        }
        js.stale = false;
        js.appended = 0;
        js.unsynced.clear();
        let dropped: Vec<String> = {
            let mut st = self.write_state();
            st.pending = Pending::default();
            std::mem::take(&mut st.working).into_keys().collect()
        };
        // Only now that the journal names none of them durably.
        self.drop_unstaged_refs(&mut js);
        // The names the dropped deletes and renames took away are back: their metadata too.
        if let Err(e) = self.lock_meta().rollback() {
            log::error!("rollback: metadata of the restored names not restored: {e}");
        }
        drop(js);
        let n = dropped.len();
        if n > 0 {
            let head = self.head();
            self.send(HeadEvent {
                old: head,
                new: head,
                origin: HeadOrigin::Rollback,
                changed: dropped,
            });
        }
        Ok(n)
    }
}

/// The message of a gitdb commit: the user's text, a blank line, the stamp trailers.
fn commit_message(user: &str, stamp: &CommitStamp) -> String {
    let user = user.trim();
    let user = if user.is_empty() {
        "gitdb commit"
    } else {
        user
    };
    format!("{user}\n\n{}", stamp.trailers())
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}
