//! merge: the one result every node agrees on when two heads meet.
//!
//! Gossip hands us a peer's head; [`merge`] decides by ancestry (nothing to do, fast-forward, or a
//! real merge) and, for a real merge, builds a commit that is a function of the two heads alone,
//! so that every node merging the same pair in either direction writes the *same* commit id and
//! gossip converges instead of producing merge storms. Layout, one concept per file:
//! - [`base`]: which common ancestor(s) the three-way merge compares against (criss-cross and
//!   unrelated histories included).
//! - [`three_way`]: the per-key merge over the two tree diffs, value-vs-directory repair and the
//!   tree edits; cost grows with the changed keys, not the store.
//! - [`writer`]: the commit that last wrote a key on one side, and the total "later write" order
//!   (vector clock dominance, then hybrid timestamp, then node id, then commit id).
//! - [`strategy`]: LastWriteWins, KeepBoth (conflict markers) and Custom resolvers.
//! - [`driver`]: the external merge-driver command (`cmd %O %A %B`) as a Custom resolver.
//! - Conflicted keys are recorded as `Gitdb-Conflict` trailers of the merge commit, a format
//!   db owns next to the commit stamp (`db/conflicts.rs`), which also reads them back.
//!
//! # Determinism rules
//! The two heads are put in canonical order (by commit id) before anything else, and nothing
//! below looks at which one is "ours". The merge commit has: parents sorted by id; author and
//! committer `gitdb-merge <gitdb-merge@gitdb>`; time = the later of the two heads' commit times;
//! message `Merge <id1> and <id2>` plus trailers; `Gitdb-Clock` = element-wise max of the two
//! heads' clocks; `Gitdb-Hlc` = the larger head HLC plus one logical tick (so a value written by
//! a merge is ordered after everything it merged); `Gitdb-Merge` = the strategy name; and one
//! `Gitdb-Conflict` trailer per conflicted key. Neither the local wall clock nor the local node
//! enters the commit.
//!
//! # Merges are superseded, not merged
//! Deterministic pairwise merges are not enough with three or more writers: node A merges
//! (a, b) while C merges (a, c), and merging those two merges gives yet another commit, so the
//! heads multiply faster than gossip spreads them. What matters is the set of *writes* (every
//! commit not made by `gitdb-merge`): when everything our head holds beyond theirs is merges,
//! their head already holds all our writes, so we take their head instead of merging it
//! (`Superseded`); when everything their head holds beyond ours is merges, ours holds all of
//! theirs and we keep it (`NoOp`); when both hold only merges beyond each other (the same
//! writes, merged in different orders), the smaller commit id wins on both nodes. A new merge
//! commit is written only when each side holds a write the other lacks, so once the writes
//! stop, every node reaches one head without writing any further commit.

pub mod base;
pub mod driver;
pub mod strategy;
pub mod three_way;
pub mod writer;

use crate::db::{CommitStamp, DbError, GitDb, HeadOrigin, Hlc, VectorClock};
use crate::store::{ObjectId, Signature, Store, StoreError};

pub use crate::db::conflicts::{conflict_trailers, conflicts_at, parse_conflicts};
pub use crate::merge::driver::merge_driver;
pub use crate::merge::strategy::{ConflictCase, Content, Resolution, Resolver, Side, Strategy};

/// Name and email of every merge commit (derived from nothing local, so identical everywhere).
pub const MERGE_IDENTITY: &str = "gitdb-merge";
/// Trailer naming the strategy a merge commit was made with.
pub const TRAILER_MERGE: &str = "Gitdb-Merge";

/// Errors of the merge layer, each naming the commit (and key) concerned.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("cannot read commit {commit}: {source}")]
    Commit {
        commit: ObjectId,
        source: StoreError,
    },
    #[error("cannot find the merge bases of {a} and {b}: {source}")]
    Bases {
        a: ObjectId,
        b: ObjectId,
        source: StoreError,
    },
    #[error("cannot read key {key} at {commit}: {source}")]
    Key {
        commit: ObjectId,
        key: String,
        source: StoreError,
    },
    #[error("cannot write the merge of {a} and {b}: {source}")]
    Write {
        a: ObjectId,
        b: ObjectId,
        source: StoreError,
    },
    #[error("cannot move the head to {commit}: {source}")]
    MoveHead { commit: ObjectId, source: DbError },
    #[error("merging {theirs}: the head kept moving under us ({attempts} attempts)")]
    Race { theirs: ObjectId, attempts: u32 },
}

pub type Result<T, E = MergeError> = std::result::Result<T, E>;

/// What [`merge`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOutcome {
    /// Their head is ours or one of our ancestors, or holds beyond ours only merges of
    /// writes ours holds too (see the module docs): nothing to do.
    NoOp,
    /// Our head held beyond theirs only merges of writes theirs holds too: the branch now
    /// points at theirs, which is not a descendant of ours.
    Superseded { from: ObjectId, to: ObjectId },
    /// Our head was an ancestor of theirs (or we had none): the branch now points at theirs.
    FastForward {
        from: Option<ObjectId>,
        to: ObjectId,
    },
    /// A merge commit was written and is the new head; `conflicts` lists the keys this merge
    /// left in conflict (KeepBoth, or a failed Custom resolver), sorted.
    Merged {
        commit: ObjectId,
        conflicts: Vec<String>,
    },
}

/// The merge commit of two heads, written to the object database (no ref moved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeCommit {
    pub commit: ObjectId,
    pub tree: ObjectId,
    /// The merge bases used (sorted; empty for unrelated histories).
    pub bases: Vec<ObjectId>,
    /// Every key in conflict at the merge commit (inherited and new), sorted.
    pub conflicts: Vec<String>,
    /// Keys this merge put in conflict, sorted.
    pub new_conflicts: Vec<String>,
}

/// Merges `their_head` (already in the repository) into the db's branch.
///
/// `their_clock` is the peer's announced vector clock; it is only compared with the clock in
/// their head's stamp for the log — the merge itself reads clocks from commits, so that it is
/// the same on every node. `now_ms` is not written anywhere (see the module docs); it is only
/// used to log how old their head is. The working layer stays on top of the new head.
pub fn merge(
    db: &GitDb,
    their_head: ObjectId,
    their_clock: Option<&VectorClock>,
    strategy: &Strategy,
    now_ms: u64,
) -> Result<MergeOutcome> {
    let store = db.store();
    let theirs_info = store
        .commit_info(their_head)
        .map_err(|source| MergeError::Commit {
            commit: their_head,
            source,
        })?;
    let stamp = CommitStamp::from_message(&theirs_info.message);
    if let Some(c) = their_clock
        && *c != stamp.clock
    {
        log::debug!(
            "peer announced clock {c} but {their_head} is stamped {}",
            stamp.clock
        );
    }
    if let Some(h) = stamp.hlc {
        log::debug!(
            "merging {their_head} written {} ms ago",
            now_ms.saturating_sub(h.millis)
        );
    }
    const ATTEMPTS: u32 = 8;
    for _ in 0..ATTEMPTS {
        let ours = db.head();
        let (outcome, new) = match ours {
            None => (
                MergeOutcome::FastForward {
                    from: None,
                    to: their_head,
                },
                their_head,
            ),
            Some(ours) => {
                // Two walks answer every question ancestry asks here: what each side holds
                // beyond the other (empty: an ancestor), and whether that is only merges.
                let theirs_only = beyond(store, their_head, ours)?;
                if theirs_only.is_empty() {
                    return Ok(MergeOutcome::NoOp);
                }
                let ours_only = beyond(store, ours, their_head)?;
                if ours_only.is_empty() {
                    (
                        MergeOutcome::FastForward {
                            from: Some(ours),
                            to: their_head,
                        },
                        their_head,
                    )
                } else if let Some(outcome) = supersede(
                    ours,
                    their_head,
                    only_merges(store, &ours_only)?,
                    only_merges(store, &theirs_only)?,
                ) {
                    match outcome {
                        MergeOutcome::Superseded { to, .. } => (outcome, to),
                        _ => return Ok(outcome),
                    }
                } else {
                    let m = merge_commits(store, ours, their_head, strategy)?;
                    (
                        MergeOutcome::Merged {
                            commit: m.commit,
                            conflicts: m.new_conflicts,
                        },
                        m.commit,
                    )
                }
            }
        };
        let reason = match &outcome {
            MergeOutcome::FastForward { .. } => format!("gitdb merge: fast-forward to {new}"),
            MergeOutcome::Superseded { .. } => format!("gitdb merge: superseded by {new}"),
            _ => format!("gitdb merge: {their_head}"),
        };
        let origin = match &outcome {
            MergeOutcome::FastForward { .. } => HeadOrigin::FastForward,
            MergeOutcome::Superseded { .. } => HeadOrigin::Superseded,
            _ => HeadOrigin::Merge,
        };
        match db.move_head(ours, new, &reason, origin) {
            Ok(()) => return Ok(outcome),
            Err(DbError::Store(StoreError::RefMoved { actual, .. })) => {
                log::info!("branch moved to {actual:?} while merging {their_head}; retrying");
                // A local commit may have landed: let the db adopt it before recomputing.
                let _ = db.refresh();
            }
            Err(source) => {
                return Err(MergeError::MoveHead {
                    commit: new,
                    source,
                });
            }
        }
    }
    Err(MergeError::Race {
        theirs: their_head,
        attempts: ATTEMPTS,
    })
}

/// For concurrent heads, given whether each holds only merges beyond the other: `Some(NoOp)`
/// to keep ours, `Some(Superseded)` to take theirs, `None` to write a merge commit (see
/// "Merges are superseded" in the module docs).
fn supersede(
    ours: ObjectId,
    theirs: ObjectId,
    ours_only_merges: bool,
    theirs_only_merges: bool,
) -> Option<MergeOutcome> {
    match (ours_only_merges, theirs_only_merges) {
        (true, true) if theirs < ours => Some(MergeOutcome::Superseded {
            from: ours,
            to: theirs,
        }),
        (true, true) | (false, true) => Some(MergeOutcome::NoOp),
        (true, false) => Some(MergeOutcome::Superseded {
            from: ours,
            to: theirs,
        }),
        (false, false) => None,
    }
}

/// The commits reachable from `tip` and not from `other`.
fn beyond(store: &Store, tip: ObjectId, other: ObjectId) -> Result<Vec<ObjectId>> {
    store
        .commits_missing(tip, &[other])
        .map_err(|source| MergeError::Bases {
            a: tip,
            b: other,
            source,
        })
}

/// Whether every one of `commits` is a gitdb merge.
fn only_merges(store: &Store, commits: &[ObjectId]) -> Result<bool> {
    for &c in commits {
        let info = store
            .commit_info(c)
            .map_err(|source| MergeError::Commit { commit: c, source })?;
        if info.author != MERGE_IDENTITY {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Writes the merge commit of `a` and `b` (the order of the arguments does not matter) and
/// returns it; moves no ref. Deterministic: see the module docs.
pub fn merge_commits(
    store: &Store,
    a: ObjectId,
    b: ObjectId,
    strategy: &Strategy,
) -> Result<MergeCommit> {
    let (x, y) = if a <= b { (a, b) } else { (b, a) };
    let info = |id: ObjectId| {
        store
            .commit_info(id)
            .map_err(|source| MergeError::Commit { commit: id, source })
    };
    let (xi, yi) = (info(x)?, info(y)?);
    let bases = base::merge_bases(store, x, y)?;
    let merged = three_way::merge_trees(store, x, y, &bases, strategy)?;

    let (sx, sy) = (writer::stamp_of(store, x)?, writer::stamp_of(store, y)?);
    let mut clock = sx.clock.clone();
    clock.merge(&sy.clock);
    let seconds = xi.seconds.max(yi.seconds);
    let hlc = sx.hlc.max(sy.hlc).unwrap_or(Hlc {
        millis: (seconds.max(0) as u64) * 1000,
        counter: 0,
    });
    // One logical tick past both heads: never behind anything merged, never the wall clock.
    let hlc = hlc.tick(0);
    let stamp = CommitStamp {
        node: None,
        clock,
        hlc: Some(hlc),
    };
    let mut message = format!("Merge {x} and {y}\n\n{}", stamp.trailers());
    message.push_str(&format!("{TRAILER_MERGE}: {}\n", strategy.name()));
    message.push_str(&conflict_trailers(&merged.conflicts));
    let sig = Signature {
        name: MERGE_IDENTITY.into(),
        email: format!("{MERGE_IDENTITY}@gitdb"),
        seconds,
    };
    let commit = store
        .write_commit(merged.tree, &[x, y], &sig, &message)
        .map_err(|source| MergeError::Write { a: x, b: y, source })?;
    Ok(MergeCommit {
        commit,
        tree: merged.tree,
        bases,
        conflicts: merged.conflicts,
        new_conflicts: merged.new_conflicts,
    })
}

#[cfg(test)]
mod tests;
