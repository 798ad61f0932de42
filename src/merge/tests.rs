//! Unit tests of the merge layer, one per case, on real repositories in temp directories. Each
//! simulated node has its own repository; objects are copied between them with the store.

use std::time::Duration;

use super::*;
use crate::db::{GitDb, NodeId, Options};

struct Node {
    _dir: tempfile::TempDir,
    db: GitDb,
}

fn node(name: &str) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let db = GitDb::open(
        dir.path().join("repo.git"),
        NodeId::new(name).unwrap(),
        Options::default(),
    )
    .unwrap();
    Node { _dir: dir, db }
}

/// Applies sets (`Some`) and deletes (`None`), commits at `t` ms, returns the new head.
fn commit(n: &Node, changes: &[(&str, Option<&str>)], t: u64) -> ObjectId {
    for (k, v) in changes {
        match v {
            Some(v) => n.db.set(k, v.as_bytes()).unwrap(),
            None => n.db.delete(k).unwrap(),
        }
    }
    n.db.commit("test", t).unwrap();
    n.db.head().unwrap()
}

/// Copies `from`'s head into `to`'s repository.
fn fetch(to: &Node, from: &Node) -> ObjectId {
    let head = from.db.head().unwrap();
    to.db.store().copy_from(from.db.store(), head).unwrap();
    head
}

fn pull(to: &Node, from: &Node, s: &Strategy) -> MergeOutcome {
    let head = fetch(to, from);
    merge(&to.db, head, None, s, 0).unwrap()
}

/// Both nodes merge the other's (pre-exchange) head; asserts they end on the same commit.
fn exchange(a: &Node, b: &Node, s: &Strategy) -> (MergeOutcome, MergeOutcome) {
    let (ha, hb) = (fetch(b, a), fetch(a, b));
    let oa = merge(&a.db, hb, None, s, 0).unwrap();
    let ob = merge(&b.db, ha, None, s, 0).unwrap();
    assert_eq!(a.db.head(), b.db.head(), "{oa:?} vs {ob:?}");
    (oa, ob)
}

fn get(n: &Node, key: &str) -> Option<String> {
    n.db.get(key)
        .unwrap()
        .map(|b| String::from_utf8(b.to_vec()).unwrap())
}

/// Two nodes sharing one base commit (made by `a`, fetched by `b`).
fn pair(base: &[(&str, Option<&str>)]) -> (Node, Node) {
    let (a, b) = (node("node-a"), node("node-b"));
    commit(&a, base, 1000);
    let h = fetch(&b, &a);
    assert!(matches!(
        merge(&b.db, h, None, &Strategy::KeepBoth, 0).unwrap(),
        MergeOutcome::FastForward { .. }
    ));
    (a, b)
}

#[test]
fn fast_forward_into_empty_head() {
    let (a, b) = (node("node-a"), node("node-b"));
    commit(&a, &[("k", Some("1"))], 1000);
    let h = fetch(&b, &a);
    assert_eq!(
        merge(&b.db, h, None, &Strategy::LastWriteWins, 0).unwrap(),
        MergeOutcome::FastForward { from: None, to: h }
    );
    assert_eq!(get(&b, "k").as_deref(), Some("1"));
}

#[test]
fn ancestry_noop_when_theirs_is_an_ancestor() {
    let (a, b) = pair(&[("k", Some("1"))]);
    commit(&b, &[("k", Some("2"))], 2000);
    assert_eq!(pull(&b, &a, &Strategy::LastWriteWins), MergeOutcome::NoOp);
}

#[test]
fn ancestry_fast_forward_when_ours_is_an_ancestor() {
    let (a, b) = pair(&[("k", Some("1"))]);
    let h = commit(&b, &[("k", Some("2"))], 2000);
    let before = a.db.head();
    assert_eq!(
        pull(&a, &b, &Strategy::LastWriteWins),
        MergeOutcome::FastForward {
            from: before,
            to: h
        }
    );
    assert_eq!(get(&a, "k").as_deref(), Some("2"));
}

#[test]
fn one_sided_changes_take_that_side() {
    let (a, b) = pair(&[("x", Some("0")), ("y", Some("0")), ("z", Some("0"))]);
    commit(&a, &[("x", Some("a")), ("z", None)], 2000);
    commit(&b, &[("y", Some("b")), ("w", Some("new"))], 2000);
    let (o, _) = exchange(&a, &b, &Strategy::KeepBoth);
    assert!(matches!(o, MergeOutcome::Merged { ref conflicts, .. } if conflicts.is_empty()));
    assert_eq!(get(&a, "x").as_deref(), Some("a"));
    assert_eq!(get(&a, "y").as_deref(), Some("b"));
    assert_eq!(get(&a, "z"), None);
    assert_eq!(get(&a, "w").as_deref(), Some("new"));
}

#[test]
fn merge_is_symmetric_byte_identical_in_either_direction() {
    for s in [Strategy::LastWriteWins, Strategy::KeepBoth] {
        let (a, b) = pair(&[("k", Some("0"))]);
        let ha = commit(&a, &[("k", Some("a")), ("p", Some("1"))], 2000);
        let hb = commit(&b, &[("k", Some("b")), ("q", Some("2"))], 2500);
        fetch(&a, &b);
        let m1 = merge_commits(a.db.store(), ha, hb, &s).unwrap();
        let m2 = merge_commits(a.db.store(), hb, ha, &s).unwrap();
        assert_eq!(m1, m2);
        exchange(&a, &b, &s);
        assert_eq!(a.db.head(), Some(m1.commit));
        let info = a.db.store().commit_info(m1.commit).unwrap();
        let mut parents = vec![ha, hb];
        parents.sort();
        assert_eq!(info.parents, parents, "parents in canonical order");
        assert_eq!(info.author, MERGE_IDENTITY);
        assert_eq!(info.seconds, 2, "the later head's time, not the wall clock");
        let stamp = CommitStamp::from_message(&info.message);
        assert_eq!(stamp.clock.to_string(), "node-a=2 node-b=1");
        assert_eq!(
            stamp.hlc,
            Some(Hlc {
                millis: 2500,
                counter: 1
            })
        );
    }
}

#[test]
fn merging_the_result_again_is_a_noop() {
    let (a, b) = pair(&[("k", Some("0"))]);
    commit(&a, &[("k", Some("a"))], 2000);
    commit(&b, &[("k", Some("b"))], 2000);
    exchange(&a, &b, &Strategy::KeepBoth);
    let (oa, ob) = exchange(&a, &b, &Strategy::KeepBoth);
    assert_eq!((oa, ob), (MergeOutcome::NoOp, MergeOutcome::NoOp));
}

#[test]
fn lww_modify_modify_later_hlc_wins_per_key_not_whole_side() {
    let (a, b) = pair(&[("k1", Some("0")), ("k2", Some("0"))]);
    // a writes k1 late and k2 early; b the reverse: each key goes to its own later writer.
    commit(&a, &[("k2", Some("a-early"))], 2000);
    commit(&b, &[("k1", Some("b-early"))], 2000);
    commit(&b, &[("k2", Some("b-late"))], 4000);
    commit(&a, &[("k1", Some("a-late"))], 5000);
    exchange(&a, &b, &Strategy::LastWriteWins);
    assert_eq!(get(&a, "k1").as_deref(), Some("a-late"));
    assert_eq!(get(&a, "k2").as_deref(), Some("b-late"));
    assert!(a.db.conflicts().unwrap().is_empty());
}

#[test]
fn lww_causally_later_write_wins_over_larger_hlc() {
    let (a, b) = pair(&[("k", Some("0"))]);
    // a's clock runs far ahead; b then sees a's write and overwrites it with a smaller wall time.
    commit(&a, &[("k", Some("a-future"))], 9_000_000);
    pull(&b, &a, &Strategy::LastWriteWins);
    commit(&b, &[("k", Some("b-after"))], 2000);
    commit(&a, &[("other", Some("x"))], 9_000_100);
    exchange(&a, &b, &Strategy::LastWriteWins);
    assert_eq!(get(&a, "k").as_deref(), Some("b-after"));
}

#[test]
fn lww_delete_vs_modify_decided_by_last_write() {
    let (a, b) = pair(&[("gone", Some("0")), ("kept", Some("0"))]);
    commit(&a, &[("gone", None), ("kept", Some("a"))], 3000);
    commit(&b, &[("gone", Some("b")), ("kept", None)], 2000);
    exchange(&a, &b, &Strategy::LastWriteWins);
    assert_eq!(get(&a, "gone"), None, "a's later delete wins");
    assert_eq!(
        get(&a, "kept").as_deref(),
        Some("a"),
        "a's later write wins"
    );
}

#[test]
fn lww_equal_hlc_tie_broken_by_node_id() {
    let (a, b) = pair(&[("k", Some("0"))]);
    commit(&a, &[("k", Some("a"))], 2000);
    commit(&b, &[("k", Some("b"))], 2000);
    exchange(&a, &b, &Strategy::LastWriteWins);
    assert_eq!(get(&a, "k").as_deref(), Some("b"), "node-b > node-a");
}

#[test]
fn keep_both_modify_modify_markers_in_node_order() {
    let (a, b) = pair(&[("k", Some("0"))]);
    commit(&b, &[("k", Some("from b"))], 2000);
    commit(&a, &[("k", Some("from a\n"))], 3000);
    let (oa, _) = exchange(&a, &b, &Strategy::KeepBoth);
    assert!(
        matches!(oa, MergeOutcome::Merged { ref conflicts, .. } if conflicts == &["k".to_owned()])
    );
    assert_eq!(
        get(&a, "k").as_deref(),
        Some("<<<<<<< node-a\nfrom a\n=======\nfrom b\n>>>>>>> node-b\n")
    );
    assert_eq!(a.db.conflicts().unwrap(), vec!["k".to_owned()]);
    assert_eq!(b.db.conflicts().unwrap(), vec!["k".to_owned()]);
}

#[test]
fn keep_both_delete_vs_modify_keeps_the_modified_value() {
    let (a, b) = pair(&[("k", Some("0"))]);
    commit(&a, &[("k", None), ("x", Some("1"))], 3000);
    commit(&b, &[("k", Some("modified"))], 2000);
    exchange(&a, &b, &Strategy::KeepBoth);
    assert_eq!(get(&a, "k").as_deref(), Some("modified"));
    assert_eq!(a.db.conflicts().unwrap(), vec!["k".to_owned()]);
}

#[test]
fn keep_both_add_add_on_unrelated_histories_merges_against_the_empty_tree() {
    let (a, b) = (node("node-a"), node("node-b"));
    commit(&a, &[("only-a", Some("1")), ("both", Some("a"))], 1000);
    commit(&b, &[("only-b", Some("2")), ("both", Some("b"))], 1000);
    let (o, _) = exchange(&a, &b, &Strategy::KeepBoth);
    assert!(matches!(o, MergeOutcome::Merged { .. }));
    assert_eq!(get(&a, "only-a").as_deref(), Some("1"));
    assert_eq!(get(&a, "only-b").as_deref(), Some("2"));
    assert_eq!(
        get(&a, "both").as_deref(),
        Some("<<<<<<< node-a\na\n=======\nb\n>>>>>>> node-b\n")
    );
}

#[test]
fn value_vs_directory_keeps_the_directory_and_moves_the_value_to_a_sibling() {
    for s in [Strategy::KeepBoth, Strategy::LastWriteWins] {
        let (a, b) = pair(&[("d/x", Some("0")), ("other", Some("0"))]);
        // a replaces the directory d by a value; b keeps writing inside it.
        a.db.delete_prefix("d").unwrap();
        commit(&a, &[("d", Some("a value"))], 3000);
        commit(&b, &[("d/y", Some("b"))], 2000);
        exchange(&a, &b, &s);
        assert_eq!(get(&a, "d/y").as_deref(), Some("b"));
        assert_eq!(get(&a, "d~conflict-node-a").as_deref(), Some("a value"));
        assert!(
            a.db.conflicts()
                .unwrap()
                .contains(&"d~conflict-node-a".to_owned())
        );
    }
}

#[test]
fn writing_a_conflicted_key_again_resolves_it() {
    let (a, b) = pair(&[("k", Some("0")), ("j", Some("0"))]);
    commit(&a, &[("k", Some("a")), ("j", Some("a"))], 2000);
    commit(&b, &[("k", Some("b")), ("j", Some("b"))], 2000);
    exchange(&a, &b, &Strategy::KeepBoth);
    assert_eq!(a.db.conflicts().unwrap(), vec!["j", "k"]);
    commit(&a, &[("k", Some("fixed"))], 3000);
    assert_eq!(a.db.conflicts().unwrap(), vec!["j"]);
    // The list survives the next merge while the conflicted value does.
    commit(&b, &[("z", Some("1"))], 3000);
    exchange(&a, &b, &Strategy::KeepBoth);
    assert_eq!(b.db.conflicts().unwrap(), vec!["j"]);
    assert_eq!(get(&b, "k").as_deref(), Some("fixed"));
}

#[test]
fn custom_closure_resolves_with_sides_in_canonical_order() {
    let s = Strategy::custom(|case| {
        assert_eq!(case.sides[0].node, "node-a");
        assert_eq!(case.sides[1].node, "node-b");
        let v = |i: usize| case.sides[i].value.as_ref().map(|c| c.data.to_vec());
        let mut out = v(0).unwrap_or_default();
        out.extend(b"+");
        out.extend(v(1).unwrap_or_default());
        Resolution::Value(out)
    });
    let (a, b) = pair(&[("k", Some("0"))]);
    commit(&b, &[("k", Some("b"))], 2000);
    commit(&a, &[("k", Some("a"))], 3000);
    let (o, _) = exchange(&a, &b, &s);
    assert!(matches!(o, MergeOutcome::Merged { ref conflicts, .. } if conflicts.is_empty()));
    assert_eq!(get(&a, "k").as_deref(), Some("a+b"));
}

#[test]
fn custom_failing_or_panicking_resolver_falls_back_to_keep_both() {
    let s = Strategy::custom(|case| {
        if case.key == "p" {
            panic!("resolver bug")
        }
        Resolution::Failed("no idea".into())
    });
    let (a, b) = pair(&[("k", Some("0")), ("p", Some("0"))]);
    commit(&a, &[("k", Some("a")), ("p", Some("a"))], 2000);
    commit(&b, &[("k", Some("b")), ("p", Some("b"))], 2000);
    exchange(&a, &b, &s);
    let both = "<<<<<<< node-a\na\n=======\nb\n>>>>>>> node-b\n";
    assert_eq!(get(&a, "k").as_deref(), Some(both));
    assert_eq!(get(&a, "p").as_deref(), Some(both));
    assert_eq!(a.db.conflicts().unwrap(), vec!["k", "p"]);
}

#[test]
fn merge_driver_command_resolves_from_percent_a() {
    let s = merge_driver("cat %B >> %A", Duration::from_secs(10));
    let (a, b) = pair(&[("k", Some("0"))]);
    commit(&a, &[("k", Some("a\n"))], 2000);
    commit(&b, &[("k", Some("b\n"))], 2000);
    exchange(&a, &b, &s);
    assert_eq!(get(&a, "k").as_deref(), Some("a\nb\n"));
    assert!(a.db.conflicts().unwrap().is_empty());
}

#[test]
fn merge_driver_failure_or_timeout_falls_back_to_keep_both() {
    for cmd in ["exit 3", "sleep 5"] {
        let s = merge_driver(cmd, Duration::from_millis(200));
        let (a, b) = pair(&[("k", Some("0"))]);
        commit(&a, &[("k", Some("a"))], 2000);
        commit(&b, &[("k", Some("b"))], 2000);
        exchange(&a, &b, &s);
        assert_eq!(
            get(&a, "k").as_deref(),
            Some("<<<<<<< node-a\na\n=======\nb\n>>>>>>> node-b\n")
        );
        assert_eq!(a.db.conflicts().unwrap(), vec!["k"]);
    }
}

#[test]
fn working_layer_survives_a_merge() {
    let (a, b) = pair(&[("k", Some("0"))]);
    commit(&b, &[("k", Some("b")), ("n", Some("new"))], 2000);
    commit(&a, &[("j", Some("a"))], 2000);
    a.db.set("dirty", b"uncommitted").unwrap();
    a.db.set("k", b"local").unwrap();
    pull(&a, &b, &Strategy::LastWriteWins);
    assert_eq!(get(&a, "dirty").as_deref(), Some("uncommitted"));
    assert_eq!(get(&a, "k").as_deref(), Some("local"));
    assert_eq!(get(&a, "n").as_deref(), Some("new"));
    assert!(a.db.is_dirty());
}

#[test]
fn criss_cross_merge_bases_are_handled_deterministically() {
    // Three nodes: c merges a1+b1, a merges b2 (b1's child) — a criss-cross between a and c.
    let (a, b) = pair(&[("k", Some("0")), ("m", Some("0"))]);
    let c = node("node-c");
    commit(&a, &[("k", Some("a1"))], 2000);
    commit(&b, &[("m", Some("b1"))], 2000);
    pull(&c, &a, &Strategy::KeepBoth);
    pull(&c, &b, &Strategy::KeepBoth);
    commit(&b, &[("m", Some("b2"))], 3000);
    pull(&a, &b, &Strategy::KeepBoth);
    commit(&c, &[("k", Some("c"))], 4000);
    commit(&a, &[("z", Some("a"))], 4000);
    let (ha, hc) = (fetch(&c, &a), fetch(&a, &c));
    let bases = a.db.store().merge_bases(ha, hc).unwrap();
    assert!(bases.len() >= 2, "criss-cross has several bases: {bases:?}");
    exchange(&a, &c, &Strategy::KeepBoth);
    assert_eq!(get(&a, "k").as_deref(), Some("c"));
    assert_eq!(get(&a, "m").as_deref(), Some("b2"));
    assert_eq!(get(&a, "z").as_deref(), Some("a"));
    assert!(a.db.conflicts().unwrap().is_empty());
}

#[test]
fn conflict_trailers_round_trip_odd_keys() {
    let keys = vec!["a%b".to_owned(), "line\nbreak".to_owned(), "x".to_owned()];
    let msg = format!(
        "Merge\n\nGitdb-Clock: a=1\n{}",
        crate::merge::conflict_trailers(&keys)
    );
    assert_eq!(crate::merge::parse_conflicts(&msg), keys);
}

#[test]
fn stock_git_commit_in_history_is_labelled_by_commit_and_keeps_the_clock() {
    let (a, b) = pair(&[("k", Some("0"))]);
    // A commit made by stock git (no trailers) on a's branch.
    let store = a.db.store();
    let head = a.db.head().unwrap();
    let base_tree = store.commit_info(head).unwrap().tree;
    let blob = store.write_blob(b"by git").unwrap();
    let tree = store
        .write_tree(
            base_tree,
            [crate::store::TreeEdit::Upsert {
                path: "k",
                mode: crate::store::ValueMode::Regular,
                id: blob,
            }],
        )
        .unwrap();
    let sig = Signature {
        name: "someone".into(),
        email: "someone@example.com".into(),
        seconds: 3,
    };
    let git_commit = store
        .write_commit(tree, &[head], &sig, "edited with git\n")
        .unwrap();
    a.db.move_head(
        Some(head),
        git_commit,
        "test",
        crate::db::HeadOrigin::External,
    )
    .unwrap();
    commit(&b, &[("k", Some("b"))], 2000);
    exchange(&a, &b, &Strategy::KeepBoth);
    let label = format!("commit-{}", &git_commit.to_string()[..7]);
    assert_eq!(
        get(&a, "k").unwrap(),
        format!("<<<<<<< {label}\nby git\n=======\nb\n>>>>>>> node-b\n")
    );
    let info = a.db.store().commit_info(a.db.head().unwrap()).unwrap();
    assert_eq!(
        CommitStamp::from_message(&info.message).clock.to_string(),
        "node-a=1 node-b=1"
    );
}

#[test]
fn merging_an_unknown_commit_is_a_typed_error_naming_it() {
    let (a, _b) = pair(&[("k", Some("0"))]);
    let missing = ObjectId::from_hex(b"0123456789012345678901234567890123456789").unwrap();
    match merge(&a.db, missing, None, &Strategy::KeepBoth, 0) {
        Err(MergeError::Commit { commit, .. }) => assert_eq!(commit, missing),
        other => panic!("{other:?}"),
    }
}

/// Names stored escaped (`.git`, `%…`) merge as keys under their real names: both nodes end on
/// one commit, conflicts name the real key, and the tree holds only escaped names.
#[test]
fn escaped_names_merge_under_their_real_names() {
    let (a, b) = pair(&[("p/.git/HEAD", Some("0")), ("p/%d", Some("0"))]);
    commit(
        &a,
        &[("p/.git/HEAD", Some("a\n")), ("p/.GIT~", Some("x"))],
        2000,
    );
    commit(&b, &[("p/.git/HEAD", Some("b\n")), ("p/%d", None)], 2500);
    let (oa, _) = exchange(&a, &b, &Strategy::KeepBoth);
    assert!(
        matches!(oa, MergeOutcome::Merged { ref conflicts, .. } if conflicts == &["p/.git/HEAD".to_owned()]),
        "{oa:?}"
    );
    assert_eq!(
        get(&b, "p/.git/HEAD").as_deref(),
        Some("<<<<<<< node-a\na\n=======\nb\n>>>>>>> node-b\n")
    );
    assert_eq!(get(&b, "p/%d"), None);
    assert_eq!(get(&a, "p/.GIT~").as_deref(), Some("x"));
    let root = a.db.store().commit_info(a.db.head().unwrap()).unwrap().tree;
    let p = a.db.store().lookup(root, "p").unwrap().unwrap().id;
    let (_, data) = a.db.store().raw_object(p).unwrap();
    let tree = gix::objs::TreeRef::from_bytes(&data, gix::hash::Kind::Sha1).unwrap();
    let raw: Vec<String> = tree
        .entries
        .iter()
        .map(|e| e.filename.to_string())
        .collect();
    assert_eq!(raw, ["%.git", ".GIT~"]);
}

/// Three writers, merged in two different orders on two nodes: the merges supersede each
/// other instead of being merged again, so the nodes meet on one head without a new commit,
/// and each holds every write.
#[test]
fn merges_of_the_same_writes_supersede_each_other() {
    let s = Strategy::KeepBoth;
    let (a, b, c) = (node("node-a"), node("node-b"), node("node-c"));
    commit(&a, &[("a", Some("1"))], 1000);
    commit(&b, &[("b", Some("2"))], 1001);
    commit(&c, &[("c", Some("3"))], 1002);
    // x merges a, then b, then c; y merges c, then b, then a: the same writes, other merges.
    let (x, y) = (node("node-x"), node("node-y"));
    for from in [&a, &b, &c] {
        pull(&x, from, &s);
    }
    for from in [&c, &b, &a] {
        pull(&y, from, &s);
    }
    let (hx, hy) = (x.db.head().unwrap(), y.db.head().unwrap());
    assert_ne!(hx, hy, "different merge orders, different merge commits");
    let (ox, oy) = exchange(&x, &y, &s);
    let winner = hx.min(hy);
    assert_eq!(x.db.head(), Some(winner));
    for o in [ox, oy] {
        assert!(
            matches!(o, MergeOutcome::NoOp | MergeOutcome::Superseded { .. }),
            "no new merge commit: {o:?}"
        );
    }
    for k in ["a", "b", "c"] {
        assert!(get(&x, k).is_some() && get(&y, k).is_some(), "{k} kept");
    }
    // A node whose head holds a write the other lacks keeps it: a new write on x after the
    // merges is merged into y, never superseded away.
    commit(&x, &[("d", Some("4"))], 2000);
    let o = pull(&y, &x, &s);
    assert!(matches!(o, MergeOutcome::FastForward { .. }), "{o:?}");
    commit(&y, &[("e", Some("5"))], 2001);
    commit(&x, &[("f", Some("6"))], 2002);
    let (ox, _) = exchange(&x, &y, &s);
    assert!(matches!(ox, MergeOutcome::Merged { .. }), "{ox:?}");
    for k in ["d", "e", "f"] {
        assert!(get(&x, k).is_some(), "{k} kept");
    }
}

#[test]
fn each_way_a_merge_moves_the_head_is_announced_with_its_own_origin() {
    let (a, b) = pair(&[("k", Some("0"))]);
    let news = a.db.subscribe();
    commit(&b, &[("k", Some("1"))], 2000);
    pull(&a, &b, &Strategy::KeepBoth);
    assert_eq!(
        news.try_recv().unwrap().origin,
        crate::db::HeadOrigin::FastForward
    );
    commit(&a, &[("x", Some("a"))], 3000);
    assert_eq!(
        news.try_recv().unwrap().origin,
        crate::db::HeadOrigin::LocalCommit
    );
    commit(&b, &[("y", Some("b"))], 3000);
    assert!(matches!(
        pull(&a, &b, &Strategy::KeepBoth),
        MergeOutcome::Merged { .. }
    ));
    let ev = news.try_recv().unwrap();
    assert_eq!(ev.origin, crate::db::HeadOrigin::Merge);
    assert_eq!(ev.changed, vec!["y".to_string()]);
}

/// Runs stock git on `n`'s repository; its trimmed stdout.
fn git(n: &Node, index: &std::path::Path, args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write as _;
    let mut child = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(n.db.git_dir())
        .args(args)
        .env("GIT_INDEX_FILE", index)
        .env("LC_ALL", "C")
        .env("GIT_AUTHOR_NAME", "someone")
        .env("GIT_AUTHOR_EMAIL", "someone@example.com")
        .env("GIT_COMMITTER_NAME", "someone")
        .env("GIT_COMMITTER_EMAIL", "someone@example.com")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("git runs");
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(pipe);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "git {args:?} failed");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A commit by stock git plumbing on `n`'s branch: `key` = `key` on top of the parents'
/// first tree (none: a root commit), no trailers; the db adopts it. Returns its id.
fn stock_commit(n: &Node, parents: &[ObjectId], key: &str) -> ObjectId {
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("index");
    match parents.first() {
        Some(p) => git(n, &index, &["read-tree", &p.to_string()], None),
        None => git(n, &index, &["read-tree", "--empty"], None),
    };
    let blob = git(n, &index, &["hash-object", "-w", "--stdin"], Some(key));
    let info = format!("100644,{blob},{key}");
    git(
        n,
        &index,
        &["update-index", "--add", "--cacheinfo", &info],
        None,
    );
    let tree = git(n, &index, &["write-tree"], None);
    let mut args = vec!["commit-tree".to_owned(), tree, "-m".into(), key.into()];
    for p in parents {
        args.extend(["-p".to_owned(), p.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let id = git(n, &index, &args, None);
    git(n, &index, &["update-ref", "refs/heads/main", &id], None);
    n.db.refresh().unwrap();
    ObjectId::from_hex(id.as_bytes()).unwrap()
}

/// db and merge read one stamp per commit: the clock and HLC a db takes from a head are those
/// merge orders that commit's writes by, on a history with a stock-git root, stock commits
/// between gitdb commits, a gitdb merge, and a stock merge.
#[test]
fn db_and_merge_agree_on_every_commits_stamp_through_stock_git_history() {
    let (a, b) = (node("node-a"), node("node-b"));
    let mut written: Vec<(ObjectId, &str)> = Vec::new();
    let root = stock_commit(&a, &[], "r");
    written.push((root, "r"));
    let g1 = commit(&a, &[("g1", Some("1"))], 1000);
    written.push((g1, "g1"));
    let s1 = stock_commit(&a, &[g1], "s1");
    let s2 = stock_commit(&a, &[s1], "s2");
    written.extend([(s1, "s1"), (s2, "s2")]);
    assert!(matches!(
        pull(&b, &a, &Strategy::KeepBoth),
        MergeOutcome::FastForward { .. }
    ));
    let g3 = commit(&b, &[("x", Some("b")), ("g3", Some("3"))], 2000);
    let s3 = stock_commit(&b, &[g3], "s3");
    written.extend([(g3, "g3"), (s3, "s3")]);
    let g2 = commit(&a, &[("x", Some("a")), ("g2", Some("2"))], 1500);
    written.push((g2, "g2"));
    let MergeOutcome::Merged { commit: m, .. } = pull(&a, &b, &Strategy::KeepBoth) else {
        panic!("a real merge");
    };
    written.push((m, "x"));
    let s4 = stock_commit(&a, &[m], "s4");
    let sm = stock_commit(&a, &[s4, g3], "sm");
    let g4 = commit(&a, &[("g4", Some("4"))], 3000);
    written.extend([(s4, "s4"), (sm, "sm"), (g4, "g4")]);

    let store = a.db.store();
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("index");
    // db's answer: the clock and HLC a handle opened on the commit starts from.
    let db_stamp = |c: ObjectId| {
        git(
            &a,
            &index,
            &["update-ref", "refs/heads/probe", &c.to_string()],
            None,
        );
        let probe = GitDb::open(
            a.db.git_dir(),
            NodeId::new("probe").unwrap(),
            Options {
                branch: "probe".into(),
                read_only: true,
                ..Options::default()
            },
        )
        .unwrap();
        (probe.clock(), probe.hlc())
    };
    for &(c, key) in &written {
        // merge's answer: the stamp of the commit that last wrote `key` (found as `c`).
        let tree = store.commit_info(c).unwrap().tree;
        let value = writer::value_at(store, tree, key, c).unwrap();
        let w = writer::last_writer(store, c, key, value).unwrap();
        assert_eq!(w.commit, c, "{key} was written by {c}");
        assert_eq!(
            db_stamp(c),
            (w.stamp.clock.clone(), w.stamp.hlc.unwrap_or_default()),
            "db and merge disagree on the stamp of {c} (wrote {key})"
        );
        let stock = [root, s1, s2, s3, s4, sm].contains(&c);
        assert_eq!(w.stamp.node.is_none(), stock || c == m, "{key}: {w:?}");
    }
    // The pinned rule: a stamp-less root starts from nothing, a stock commit inherits its
    // first parent's clock, a stock merge follows its first parent only.
    assert_eq!(db_stamp(root), (VectorClock::new(), Hlc::default()));
    assert_eq!(db_stamp(s2), db_stamp(g1));
    assert_eq!(db_stamp(s3), db_stamp(g3));
    assert_eq!(db_stamp(sm), db_stamp(m));
    // The merge commit is stamped from both sides' stamps, as db reads them.
    let mut both = db_stamp(g2).0;
    both.merge(&db_stamp(s3).0);
    assert_eq!(db_stamp(m).0, both);
    assert_eq!(both.to_string(), "node-a=2 node-b=1");
}
