//! Commits and head moves: reading committed state, rollback, clocks and stamps, history,
//! concurrent writers, adopting a head moved behind our back, and the news subscribers hear.
//!
//! Kept apart from the working-layer tests because each of these moves the branch, and the
//! races around that move are what they pin.

use super::*;

#[test]
fn commit_then_read_committed_and_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    assert_eq!(
        db.commit("empty", 1).unwrap(),
        CommitOutcome::NothingToCommit
    );
    db.set("k", b"v1").unwrap();
    let c1 = match db.commit("first", 1_000).unwrap() {
        CommitOutcome::Committed { id, changed } => {
            assert_eq!(changed, 1);
            id
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(db.head(), Some(c1));
    assert!(!db.is_dirty());
    db.set("k", b"v2").unwrap();
    db.set("other", b"o").unwrap();
    assert_eq!(get(&db, "k"), Some(b"v2".to_vec()));
    assert_eq!(db.rollback().unwrap(), 2);
    assert_eq!(get(&db, "k"), Some(b"v1".to_vec()));
    assert_eq!(get(&db, "other"), None);
    // Setting the same value again changes nothing.
    db.set("k", b"v1").unwrap();
    assert_eq!(
        db.commit("same", 2_000).unwrap(),
        CommitOutcome::NothingToCommit
    );
    assert!(!db.is_dirty());
    assert_eq!(db.head(), Some(c1));
}

#[test]
fn commits_carry_clock_and_hlc() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    db.set("a", b"1").unwrap();
    db.commit("one", 5_000).unwrap();
    db.set("a", b"2").unwrap();
    // A clock that went backwards still yields a later HLC.
    db.commit("two", 4_000).unwrap();
    let log = db.log(10).unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].summary, "two");
    assert_eq!(log[0].clock, "n1=2");
    assert_eq!(log[1].clock, "n1=1");
    assert_eq!(log[0].hlc.as_deref(), Some("5000.1"));
    assert_eq!(log[0].author, "n1");
    assert_eq!(db.clock().to_string(), "n1=2");
}

#[test]
fn history_get_at_list_at_and_diff() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    db.set("x/a", b"1").unwrap();
    db.set("x/b", b"2").unwrap();
    db.commit("one", 1_000).unwrap();
    let c1 = db.head().unwrap().to_string();
    db.set("x/a", b"changed").unwrap();
    db.delete("x/b").unwrap();
    db.set("y", b"new").unwrap();
    db.commit("two", 2_000).unwrap();
    assert_eq!(db.get_at(&c1, "x/a").unwrap().unwrap().to_vec(), b"1");
    assert_eq!(
        db.get_at("main", "x/a").unwrap().unwrap().to_vec(),
        b"changed"
    );
    assert_eq!(db.get_at("main~1", "y").unwrap(), None);
    let listed: Vec<_> = db
        .list_at(&c1, "x")
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(listed, vec!["a", "b"]);
    let diff = db.diff(&c1, "main").unwrap();
    assert_eq!(
        diff,
        vec![
            DiffEntry {
                key: "x/a".into(),
                change: DiffKind::Modified
            },
            DiffEntry {
                key: "x/b".into(),
                change: DiffKind::Deleted
            },
            DiffEntry {
                key: "y".into(),
                change: DiffKind::Added
            },
        ]
    );
    assert!(matches!(
        db.resolve_rev("nope"),
        Err(DbError::Store(StoreError::UnknownRevision { .. }))
    ));
}
#[test]
fn refresh_adopts_a_head_moved_behind_our_back_and_keeps_the_working_layer() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    db.set("a", b"1").unwrap();
    db.commit("c1", 1_000).unwrap();
    let c1 = db.head().unwrap();
    // Another writer commits directly with the store.
    let c2 = outside_commit(&db, c1, "outside", b"from outside");
    db.store()
        .update_ref("refs/heads/main", Some(c1), c2, "test")
        .unwrap();
    db.set("mine", b"m").unwrap();
    let moved = db.refresh().unwrap().unwrap();
    assert_eq!(
        moved,
        HeadMove {
            old: Some(c1),
            new: Some(c2)
        }
    );
    assert_eq!(get(&db, "outside"), Some(b"from outside".to_vec()));
    assert_eq!(get(&db, "mine"), Some(b"m".to_vec()));
    // The clock survives a head without a stamp.
    assert_eq!(db.clock().to_string(), "n1=1");
}

#[test]
fn commit_retries_on_top_of_a_concurrent_writer() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    db.set("a", b"1").unwrap();
    db.commit("c1", 1_000).unwrap();
    let c1 = db.head().unwrap();
    let c2 = outside_commit(&db, c1, "theirs", b"theirs");
    db.store()
        .update_ref("refs/heads/main", Some(c1), c2, "test")
        .unwrap();
    // We have not refreshed: our commit must not lose theirs.
    db.set("ours", b"o").unwrap();
    let CommitOutcome::Committed { id, .. } = db.commit("c3", 3_000).unwrap() else {
        panic!("expected a commit");
    };
    assert_eq!(db.store().commit_info(id).unwrap().parents, vec![c2]);
    assert_eq!(get(&db, "theirs"), Some(b"theirs".to_vec()));
    assert_eq!(get(&db, "ours"), Some(b"o".to_vec()));
}

#[test]
fn writes_during_a_commit_stay_in_the_working_layer() {
    let dir = tempfile::tempdir().unwrap();
    let db = std::sync::Arc::new(open(dir.path()));
    for i in 0..200 {
        db.set(&format!("k/{i}"), b"x").unwrap();
    }
    let writer = {
        let db = db.clone();
        std::thread::spawn(move || {
            for i in 0..200 {
                db.set(&format!("late/{i}"), b"y").unwrap();
            }
        })
    };
    db.commit("racing", 1_000).unwrap();
    writer.join().unwrap();
    // Whatever the interleaving, every late write is visible and either committed or staged.
    for i in 0..200 {
        assert_eq!(get(&db, &format!("late/{i}")), Some(b"y".to_vec()));
    }
    db.commit("rest", 2_000).unwrap();
    assert_eq!(db.list_recursive("late").unwrap().len(), 200);
    assert!(!db.is_dirty());
}
#[test]
fn subscribers_hear_every_head_move_with_changed_keys() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let rx = db.subscribe();
    db.set("a", b"1").unwrap();
    db.commit("c1", 1_000).unwrap();
    let ev = rx.try_recv().unwrap();
    assert_eq!(ev.origin, HeadOrigin::LocalCommit);
    assert_eq!(ev.changed, vec!["a".to_string()]);
    let c1 = db.head().unwrap();
    let c2 = outside_commit(&db, c1, "b/c", b"2");
    assert!(matches!(
        db.move_head(None, c2, "wrong expectation", HeadOrigin::Merge),
        Err(DbError::Store(StoreError::RefMoved { .. }))
    ));
    db.move_head(Some(c1), c2, "merge", HeadOrigin::Merge)
        .unwrap();
    let ev = rx.try_recv().unwrap();
    assert_eq!(
        (ev.origin, ev.old, ev.new),
        (HeadOrigin::Merge, Some(c1), Some(c2))
    );
    assert_eq!(ev.changed, vec!["b/c".to_string()]);
    assert_eq!(get(&db, "b/c"), Some(b"2".to_vec()));
}

/// A rollback is news too (what readers see changed), on the same channel; a callback
/// subscriber hears it before `rollback` returns.
#[test]
fn rollback_is_announced_with_the_dropped_keys() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let rx = db.subscribe();
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let heard = heard.clone();
        db.subscribe_with(move |ev| {
            heard.lock().unwrap().push((ev.origin, ev.changed.clone()));
            true
        });
    }
    db.set("a", b"1").unwrap();
    db.commit("c1", 1_000).unwrap();
    db.set("a", b"2").unwrap();
    db.set("d/x", b"3").unwrap();
    assert_eq!(db.rollback().unwrap(), 2);
    let expect = vec!["a".to_string(), "d/x".to_string()];
    assert_eq!(
        heard.lock().unwrap().last().cloned(),
        Some((HeadOrigin::Rollback, expect.clone()))
    );
    assert_eq!(rx.try_recv().unwrap().origin, HeadOrigin::LocalCommit);
    let ev = rx.try_recv().unwrap();
    assert_eq!((ev.origin, ev.changed), (HeadOrigin::Rollback, expect));
    assert_eq!(ev.old, ev.new);
    // Nothing to drop: no news.
    assert_eq!(db.rollback().unwrap(), 0);
    assert!(rx.try_recv().is_err());
}
#[test]
fn a_value_replacing_a_directory_commits_past_unrelated_siblings() {
    // "a" < "a-b" < "a/x" in path order: the tombstone below "a" comes after a sibling.
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    db.set("a/x", b"1").unwrap();
    db.commit("c", 1_000).unwrap();
    db.delete("a/x").unwrap();
    db.set("a", b"value").unwrap();
    db.set("a-b", b"sibling").unwrap();
    db.commit("c2", 2_000).unwrap();
    assert_eq!(get(&db, "a"), Some(b"value".to_vec()));
    assert_eq!(names(&db, ""), vec!["a", "a-b"]);
}

/// A merge or fast-forward to a commit whose tree the repository lacks fails before the
/// branch moves.
#[test]
fn move_head_refuses_a_commit_whose_tree_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    db.set("a", b"1").unwrap();
    db.commit("c1", 1_000).unwrap();
    let head = db.head().unwrap();
    let absent_tree = db.store().hash_blob(b"no such tree").unwrap();
    let sig = Signature {
        name: "peer".into(),
        email: "peer@x".into(),
        seconds: 2,
    };
    let broken = db
        .store()
        .write_commit(absent_tree, &[head], &sig, "names a missing tree\n")
        .unwrap();
    let err = db
        .move_head(Some(head), broken, "test", HeadOrigin::Merge)
        .unwrap_err();
    assert!(
        matches!(err, DbError::Store(StoreError::Missing { id }) if id == absent_tree),
        "{err:?}"
    );
    assert_eq!(db.head(), Some(head));
    assert_eq!(db.store().read_ref("refs/heads/main").unwrap(), Some(head));
}

/// A head stamped an hour ahead (a peer whose clock is wrong) moves our HLC only to the skew
/// bound, whether we adopt it while running or find it at open; our next commit is stamped
/// and dated near our own clock, and still descends from (so, for LWW, is later than) it.
#[test]
fn a_head_stamped_an_hour_ahead_moves_our_clock_only_to_the_skew_bound() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let now = crate::defaults::now_ms();
    db.set("a", b"1").unwrap();
    db.commit("c1", now).unwrap();
    let c1 = db.head().unwrap();
    let hour = now + 3_600_000;
    let stamp = CommitStamp {
        node: Some(node("skewed")),
        clock: VectorClock::parse("n1=1 skewed=1").unwrap(),
        hlc: Some(Hlc {
            millis: hour,
            counter: 0,
        }),
    };
    let blob = db.store().write_blob(b"from the future").unwrap();
    let base = db.store().commit_info(c1).unwrap().tree;
    let edit = TreeEdit::Upsert {
        path: "a",
        mode: ValueMode::Regular,
        id: blob,
    };
    let tree = db.store().write_tree(base, [edit]).unwrap();
    let sig = Signature {
        name: "skewed".into(),
        email: "skewed@gitdb".into(),
        seconds: (hour / 1000) as i64,
    };
    let message = format!("skewed\n\n{}", stamp.trailers());
    let c2 = db
        .store()
        .write_commit(tree, &[c1], &sig, &message)
        .unwrap();
    db.store()
        .update_ref("refs/heads/main", Some(c1), c2, "test")
        .unwrap();
    db.refresh().unwrap().unwrap();
    let bound = crate::defaults::now_ms() + clock::MAX_CLOCK_SKEW_MS;
    let hlc = db.hlc();
    assert!(hlc.millis <= bound && hlc.millis >= now, "{hlc}");
    db.set("a", b"2").unwrap();
    db.commit("after", crate::defaults::now_ms()).unwrap();
    let c3 = db.head().unwrap();
    let log = db.log(1).unwrap();
    let c3_hlc = Hlc::parse(log[0].hlc.as_deref().unwrap()).unwrap();
    assert!(c3_hlc.millis <= bound, "{c3_hlc}");
    assert!(db.store().commit_info(c3).unwrap().seconds <= (bound / 1000) as i64);
    assert_eq!(
        log[0].clock, "n1=2 skewed=1",
        "causally after the skewed write"
    );
    drop(db);

    // Found at open: the same bound.
    let db = open(dir.path());
    db.store()
        .update_ref("refs/heads/main", Some(c3), c2, "test")
        .unwrap();
    drop(db);
    let db = open(dir.path());
    assert_eq!(db.head(), Some(c2));
    let hlc = db.hlc();
    assert!(
        hlc.millis <= crate::defaults::now_ms() + clock::MAX_CLOCK_SKEW_MS,
        "{hlc}"
    );
}
