//! The refs that keep a large uncommitted value's blob reachable until it is committed,
//! overwritten or rolled back.
//!
//! Kept apart because they pin what `git gc` beside the db may and may not collect.

use super::*;
use crate::db::staged::{STAGED_REFS, staged_ref};

/// A large value's blob is kept reachable by `refs/gitdb/staged/<id>` while only the working
/// layer names it; the ref goes when the value is committed, overwritten (at the next commit)
/// or rolled back, and a reopen puts the refs right.
#[test]
fn staged_large_values_are_protected_by_refs_until_committed_or_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let staged = |db: &GitDb| -> Vec<ObjectId> {
        db.store()
            .refs_under(STAGED_REFS)
            .unwrap()
            .into_iter()
            .map(|(_, id)| id.unwrap())
            .collect()
    };
    let id_of = |db: &GitDb, key: &str| match db.stat(key).unwrap() {
        Some(Stat::Value { id, .. }) => id,
        other => panic!("{other:?}"),
    };
    db.set("small", b"inline").unwrap();
    assert!(staged(&db).is_empty(), "a small value has no blob yet");
    db.set("big", &large(1)).unwrap();
    let first = id_of(&db, "big");
    assert_eq!(staged(&db), vec![first]);
    db.set("big", &large(2)).unwrap();
    let second = id_of(&db, "big");
    db.commit("c1", 1_000).unwrap();
    assert!(staged(&db).is_empty(), "{:?}", staged(&db));
    db.set("big", &large(3)).unwrap();
    let third = id_of(&db, "big");
    assert_eq!(staged(&db), vec![third]);
    db.rollback().unwrap();
    assert!(staged(&db).is_empty());
    // A rename of a committed value stages its blob under the new name.
    db.rename("big", "moved").unwrap();
    assert_eq!(staged(&db), vec![second]);
    db.sync().unwrap();
    // A reopen deletes a ref nothing staged needs and re-creates a missing one.
    db.store()
        .force_refs(&[(staged_ref(first), first)], &[staged_ref(second)], "test")
        .unwrap();
    drop(db);
    let db = open(dir.path());
    assert_eq!(staged(&db), vec![second]);
    db.commit("c2", 2_000).unwrap();
    assert!(staged(&db).is_empty());
}
