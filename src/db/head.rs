//! Following the branch head: adopting a head that something else moved (stock git, a merge,
//! `move_head`) with the working layer kept on top, and, for a read-only handle, following the
//! writer's journal. A head's clocks come from its nearest stamped commit
//! (the rule is `stamp.rs`'s).

use crate::db::clock::MAX_CLOCK_SKEW_MS;
use crate::db::error::journal_err;
use crate::db::journal::{self, Record};
use crate::db::journaling::apply_records;
use crate::db::staged::staged_ids;
use crate::db::stamp::nearest_stamp;
use crate::db::working::Working;
use crate::db::{CommitStamp, GitDb, HeadEvent, HeadMove, HeadOrigin, Hlc, Pending, Result};
use crate::store::{ObjectId, StoreError};

impl GitDb {
    /// Re-reads the branch ref; if something else moved it (stock git, a merge), adopts the new
    /// head, keeping the working layer on top. Returns the move, if any. A read-only handle
    /// also follows the writer's journal (see [`GitDb::follow_journal`]).
    pub fn refresh(&self) -> Result<Option<HeadMove>> {
        if self.read_only {
            return self.follow_journal(true);
        }
        // The usual answer, "not moved", without the commit lock: a periodic check then never
        // holds up a commit, nor makes a delete keep a needless tombstone.
        if self.store.read_ref(&self.branch_ref)? == self.read_state().head {
            return Ok(None);
        }
        let _one_commit = self.commit_lock.lock().unwrap_or_else(|p| p.into_inner());
        let new = self.store.read_ref(&self.branch_ref)?;
        let old = self.read_state().head;
        if new == old {
            return Ok(None);
        }
        self.adopt_head(new, HeadOrigin::External)?;
        Ok(Some(HeadMove { old, new }))
    }

    /// Makes `new` the head this node works on (the ref already points there). The journal
    /// gets a `Base` record for it (owed if the disk is full: the ref has moved, so this must
    /// not fail).
    pub(super) fn adopt_head(&self, new: Option<ObjectId>, origin: HeadOrigin) -> Result<()> {
        let (tree, stamp) = match new {
            Some(id) => (
                self.store.commit_info(id)?.tree,
                nearest_stamp(&self.store, id)?,
            ),
            None => (self.store.empty_tree(), CommitStamp::default()),
        };
        let mut js = self.lock_journal();
        let (old, old_tree) = {
            let mut st = self.write_state();
            let old = (st.head, st.head_tree);
            st.head = new;
            st.head_tree = tree;
            st.clock.merge(&stamp.clock);
            if let (Some(h), Some(id)) = (stamp.hlc, new) {
                st.hlc = adopt_hlc(st.hlc, h, id);
            }
            old
        };
        if js.stale {
            if let Err(e) = self.rewrite_from_state(&mut js) {
                log::warn!("journal still stale after adopting {new:?}: {e}");
            }
        } else if let Some(j) = js.journal.as_mut() {
            j.append_base(Record::base(new));
        }
        drop(js);
        self.publish(old, new, old_tree, tree, origin);
        Ok(())
    }

    /// Moves the branch from `expected` to `new` (a commit already in the store, e.g. a merge
    /// result or a fast-forward target) by compare-and-swap, and adopts it; the working layer
    /// stays on top. Fails with `StoreError::RefMoved` if the branch is no longer at `expected`,
    /// and without moving it if `new` or its tree is not in the repository.
    pub fn move_head(
        &self,
        expected: Option<ObjectId>,
        new: ObjectId,
        reason: &str,
        origin: HeadOrigin,
    ) -> Result<()> {
        self.check_writable()?;
        let _one_commit = self.commit_lock.lock().unwrap_or_else(|p| p.into_inner());
        let tree = self.store.commit_info(new)?.tree;
        if tree == self.store.empty_tree() {
            self.store.ensure_empty_tree()?;
        } else if !self.store.has_object(tree) {
            return Err(StoreError::Missing { id: tree }.into());
        }
        {
            // A stale journal (see `settle_journal`) must not outlive a head it was not made
            // for: replayed over the merge it could bring back what the merge replaced.
            let mut js = self.lock_journal();
            if js.stale {
                self.rewrite_from_state(&mut js)?;
            }
        }
        self.store.sync_written()?;
        self.store
            .update_ref(&self.branch_ref, expected, new, reason)?;
        self.store.sync_ref(&self.branch_ref)?;
        // Packs a transfer wrote are named by the branch now: `git gc` may repack them.
        self.store.release_packs();
        self.adopt_head(Some(new), origin)
    }

    /// For a read-only handle: reads what the writer appended to its journal since the last
    /// look (all of it when the writer replaced or reset the file), re-reads the branch ref,
    /// and rebuilds the working layer; subscribers hear of every key whose visible value
    /// changed (as `HeadOrigin::FollowedWriter`). The working layer is shown only while the journal's
    /// last `Base` names the ref's head: otherwise the writer is between moving the ref and
    /// rewriting the journal (or owes the `Base`), and the committed state alone is shown, so
    /// a reader never shows a draft older than its head.
    pub(super) fn follow_journal(&self, announce: bool) -> Result<Option<HeadMove>> {
        let _one_commit = self.commit_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut js = self.lock_journal();
        let Some(f) = js.followed.as_mut() else {
            return Ok(None);
        };
        let change = f.follower.poll().map_err(journal_err(f.follower.path()))?;
        let replaced = matches!(change, journal::Change::Replaced(_));
        let journal_changed = match change {
            journal::Change::Unchanged => false,
            journal::Change::Appended(records) | journal::Change::Replaced(records) => {
                // A rewritten journal is the whole state again: start from nothing.
                if replaced {
                    f.working.clear();
                    f.pending = Pending::default();
                    f.base = None;
                }
                apply_records(
                    &self.store,
                    &mut f.working,
                    &mut f.pending,
                    &mut f.base,
                    records,
                )?;
                true
            }
        };
        if journal_changed {
            let referenced = staged_ids(&f.working);
            f.pending.retain(|id| referenced.contains(id));
        }
        let new = self.store.read_ref(&self.branch_ref)?;
        let (old, old_tree) = {
            let st = self.read_state();
            (st.head, st.head_tree)
        };
        if !journal_changed && new == old {
            return Ok(None);
        }
        let (new_tree, stamp) = if new == old {
            (old_tree, None)
        } else {
            match new {
                Some(id) => (
                    self.store.commit_info(id)?.tree,
                    Some(nearest_stamp(&self.store, id)?),
                ),
                None => (self.store.empty_tree(), Some(CommitStamp::default())),
            }
        };
        let (mut working, pending) = if !f.working.is_empty() && f.base == Some(new) {
            (f.working.clone(), f.pending.clone())
        } else {
            (Working::new(), Pending::default())
        };
        self.prune_tombstones(&mut working, new_tree);
        let old_working = {
            let mut st = self.write_state();
            st.head = new;
            st.head_tree = new_tree;
            if let Some(stamp) = stamp {
                st.clock.merge(&stamp.clock);
                if let (Some(h), Some(id)) = (stamp.hlc, new) {
                    st.hlc = adopt_hlc(st.hlc, h, id);
                }
            }
            st.pending = pending;
            std::mem::replace(&mut st.working, working)
        };
        drop(js);
        if announce {
            let mut changed: std::collections::BTreeSet<String> =
                match self.store.diff_trees(old_tree, new_tree) {
                    Ok(changes) => changes.into_iter().map(|c| c.path).collect(),
                    Err(e) => {
                        log::warn!("cannot diff {old_tree}..{new_tree} for subscribers: {e}");
                        Default::default()
                    }
                };
            let st = self.read_state();
            changed.extend(working_diff(&old_working, &st.working));
            drop(st);
            self.announce(HeadEvent {
                old,
                new,
                origin: HeadOrigin::FollowedWriter,
                changed: changed.into_iter().collect(),
            });
        }
        Ok((new != old).then_some(HeadMove { old, new }))
    }
}

/// The local HLC after reading the stamp `seen` of commit `id` (the head we now work on): it
/// follows `seen` at most `MAX_CLOCK_SKEW_MS` past the wall clock (see `clock.rs`).
pub(super) fn adopt_hlc(mine: Hlc, seen: Hlc, id: ObjectId) -> Hlc {
    let now = crate::defaults::now_ms();
    let (hlc, bounded) = mine.adopt(seen, now);
    if bounded {
        // Debug, not warn: every merge of such a commit carries its stamp on for as long as
        // the writer's clock is ahead; gossip warns once per peer whose clock is off.
        log::debug!(
            "commit {id} is stamped {seen}, {} s ahead of our clock: our HLC follows it only \
             {} s ahead",
            seen.millis.saturating_sub(now) / 1000,
            MAX_CLOCK_SKEW_MS / 1000
        );
    }
    hlc
}

/// The paths whose change differs between two working layers.
fn working_diff(old: &Working, new: &Working) -> Vec<String> {
    let mut out: Vec<String> = new
        .iter()
        .filter(|(k, v)| old.get(k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect();
    out.extend(old.keys().filter(|k| !new.contains_key(k)).cloned());
    out
}
