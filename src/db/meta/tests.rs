use super::log_file::COMPACT_SLACK;
use super::*;
use crate::db::journal::encode_frame;
use proptest::prelude::*;

fn m(mode: u32, uid: u32) -> Meta {
    Meta { mode, uid, gid: 7 }
}

fn set(path: &str, meta: Meta) -> MetaRecord {
    MetaRecord::Set {
        path: path.into(),
        meta: Some(meta),
    }
}

const D: Defaults = Defaults {
    uid: 1000,
    gid: 1000,
    umask: 0o022,
};

#[test]
fn defaults_and_the_replicated_executable_bit() {
    let file = NodeType::File { executable: false };
    let exe = NodeType::File { executable: true };
    assert_eq!(D.resolve(file, None).mode, 0o644);
    assert_eq!(D.resolve(exe, None).mode, 0o755);
    assert_eq!(D.resolve(NodeType::Dir, None).mode, 0o755);
    assert_eq!(D.resolve(NodeType::Symlink, None).mode, 0o777);
    let d077 = Defaults { umask: 0o077, ..D };
    assert_eq!(d077.resolve(file, None).mode, 0o600);
    assert_eq!(d077.resolve(NodeType::Dir, None).mode, 0o700);
    // Stored bits agree with git's bit: shown as they are.
    assert_eq!(D.resolve(file, Some(m(0o600, 1))).mode, 0o600);
    assert_eq!(D.resolve(exe, Some(m(0o4711, 1))).mode, 0o4711);
    // A peer set the bit: x where r is; a peer cleared it: no x.
    assert_eq!(D.resolve(exe, Some(m(0o640, 1))).mode, 0o750);
    assert_eq!(D.resolve(exe, Some(m(0o000, 1))).mode, 0o100);
    assert_eq!(D.resolve(file, Some(m(0o750, 1))).mode, 0o640);
    assert_eq!(D.resolve(NodeType::Symlink, Some(m(0o600, 5))), m(0o777, 5));
    // Only what differs from the defaults is kept.
    assert_eq!(D.entry(file, D.meta(file)), None);
    assert_eq!(
        D.entry(file, m(0o644 | 0o170000, 1000)),
        Some(m(0o644, 1000))
    );
    assert_eq!(
        D.entry(
            NodeType::Symlink,
            Meta {
                mode: 0o755,
                uid: 1000,
                gid: 1000
            }
        ),
        None
    );
}

#[test]
fn moves_and_drops_follow_the_tree() {
    let mut map = MetaMap::default();
    for p in ["a", "a/b", "a/b/c", "ab", "a0", "x"] {
        map.apply(&set(p, m(0o600, 1)));
    }
    map.apply(&set("y/z", m(0o700, 2)));
    map.apply(&MetaRecord::Move {
        from: "a".into(),
        to: "y".into(),
    });
    let paths: Vec<&str> = map.iter().map(|(p, _)| p.as_str()).collect();
    // `a` and below moved, `y/z` (replaced by the move) is gone, `ab` and `a0` stayed.
    assert_eq!(paths, ["a0", "ab", "x", "y", "y/b", "y/b/c"]);
    map.apply(&MetaRecord::Drop { path: "y/b".into() });
    let paths: Vec<&str> = map.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["a0", "ab", "x", "y"]);
    map.apply(&MetaRecord::Drop { path: "".into() });
    assert!(map.is_empty());
}

#[test]
fn the_log_survives_reopen_and_drops_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta");
    let mut store = MetaStore::open(&path, false).unwrap();
    store.apply(set("a", m(0o600, 1))).unwrap();
    store.apply(set("d/f", m(0o640, 2))).unwrap();
    store
        .apply(MetaRecord::Move {
            from: "d".into(),
            to: "e".into(),
        })
        .unwrap();
    store.sync().unwrap();
    drop(store);
    let store = MetaStore::open(&path, false).unwrap();
    assert_eq!(store.get("a"), Some(m(0o600, 1)));
    assert_eq!(store.get("e/f"), Some(m(0o640, 2)));
    assert_eq!(store.get("d/f"), None);
    drop(store);
    // Every cut of the last record leaves the records before it.
    let full = std::fs::read(&path).unwrap();
    let last = encode_frame(&MetaRecord::Move {
        from: "d".into(),
        to: "e".into(),
    })
    .unwrap()
    .len();
    for cut in full.len() - last..full.len() {
        std::fs::write(&path, &full[..cut]).unwrap();
        let mut store = MetaStore::open(&path, false).unwrap();
        assert_eq!(store.get("d/f"), Some(m(0o640, 2)), "cut at {cut}");
        store.apply(set("z", m(0o400, 3))).unwrap();
        drop(store);
        let store = MetaStore::open(&path, true).unwrap();
        assert_eq!(store.get("z"), Some(m(0o400, 3)), "append after cut {cut}");
    }
}

#[test]
fn records_that_change_nothing_are_not_logged_and_compaction_keeps_the_map() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta");
    let mut store = MetaStore::open(&path, false).unwrap();
    let empty = std::fs::metadata(&path).unwrap().len();
    store.apply(MetaRecord::Drop { path: "x".into() }).unwrap();
    store
        .apply(MetaRecord::Move {
            from: "x".into(),
            to: "y".into(),
        })
        .unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), empty);
    for i in 0..(COMPACT_SLACK as u32 + 10) {
        store.apply(set("hot", m(0o600 + (i % 2), 1))).unwrap();
    }
    let len = std::fs::metadata(&path).unwrap().len() as usize;
    assert!(len < 200 * 32, "not compacted: {len} bytes");
    let want = store.get("hot");
    drop(store);
    assert_eq!(MetaStore::open(&path, true).unwrap().get("hot"), want);
}

fn staged(r: MetaRecord) -> MetaRecord {
    MetaRecord::Staged(Box::new(r))
}

/// A rollback brings back the metadata of names its dropped deletes and renames took
/// away (newest first); a commit settles them; both through reopens and a compaction.
#[test]
fn a_rollback_undoes_staged_drops_and_moves_a_commit_settles_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta");
    let mut store = MetaStore::open(&path, false).unwrap();
    store.apply(set("secret", m(0o600, 1))).unwrap();
    store.apply(set("d/f", m(0o640, 2))).unwrap();
    store.apply(set("e", m(0o700, 3))).unwrap();
    // rm secret; mv d e (replacing e); chmod of the moved file; then a rollback.
    store
        .apply(staged(MetaRecord::Drop {
            path: "secret".into(),
        }))
        .unwrap();
    store
        .apply(staged(MetaRecord::Move {
            from: "d".into(),
            to: "e".into(),
        }))
        .unwrap();
    assert_eq!(store.get("e/f"), Some(m(0o640, 2)));
    assert_eq!(store.get("e"), None);
    drop(store);
    // The undo entries are rebuilt by replay.
    let mut store = MetaStore::open(&path, false).unwrap();
    assert_eq!(store.undo_len(), 2);
    store.rollback().unwrap();
    assert_eq!(store.get("secret"), Some(m(0o600, 1)));
    assert_eq!(store.get("d/f"), Some(m(0o640, 2)));
    assert_eq!(store.get("e"), Some(m(0o700, 3)));
    assert_eq!(store.get("e/f"), None);
    assert_eq!(store.undo_len(), 0);
    // Committed: a later rollback leaves it; one staged after the commit's mark stays.
    store
        .apply(staged(MetaRecord::Drop {
            path: "secret".into(),
        }))
        .unwrap();
    let mark = store.undo_len();
    store
        .apply(staged(MetaRecord::Drop { path: "e".into() }))
        .unwrap();
    store.settle(mark).unwrap();
    assert_eq!(store.undo_len(), 1);
    let log = store.log.as_mut().unwrap();
    log.compact(&store.map, &store.undo).unwrap();
    drop(store);
    let mut store = MetaStore::open(&path, false).unwrap();
    assert_eq!(store.undo_len(), 1, "compaction lost an undo entry");
    store.rollback().unwrap();
    assert_eq!(store.get("secret"), None);
    assert_eq!(store.get("e"), Some(m(0o700, 3)));
}

#[derive(Debug, Clone)]
enum Op {
    Set(usize, Option<u32>),
    Drop(usize),
    Move(usize, usize),
    Reopen,
}

const PATHS: [&str; 7] = ["", "a", "a/b", "a/b/c", "ab", "b", "b/a"];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..PATHS.len(), proptest::option::of(0u32..0o7777)).prop_map(|(p, m)| Op::Set(p, m)),
        (0..PATHS.len()).prop_map(Op::Drop),
        (0..PATHS.len(), 0..PATHS.len()).prop_map(|(a, b)| Op::Move(a, b)),
        Just(Op::Reopen),
    ]
}

/// The map against a model (every path's entry computed directly from the tree algebra),
/// through the log and reopens.
fn model_apply(model: &mut BTreeMap<String, Meta>, op: &MetaRecord) {
    let under =
        |p: &str, root: &str| root.is_empty() || p == root || p.starts_with(&format!("{root}/"));
    match op {
        MetaRecord::Set { path, meta } => match meta {
            Some(m) => {
                model.insert(path.clone(), *m);
            }
            None => {
                model.remove(path);
            }
        },
        MetaRecord::Drop { path } => model.retain(|p, _| !under(p, path)),
        MetaRecord::Move { from, to } if from != to => {
            let moved: BTreeMap<String, Meta> = model
                .iter()
                .filter(|(p, _)| under(p, from))
                .map(|(p, m)| (format!("{to}{}", &p[from.len()..]), *m))
                .collect();
            model.retain(|p, _| !under(p, from) && !under(p, to));
            model.extend(moved);
        }
        _ => {}
    }
}

proptest! {
    #[test]
    fn the_map_and_its_log_agree_with_a_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta");
        let mut store = MetaStore::open(&path, false).unwrap();
        let mut model = BTreeMap::new();
        for op in ops {
            let record = match op {
                Op::Set(p, mode) => MetaRecord::Set {
                    path: PATHS[p].into(),
                    meta: mode.map(|mode| m(mode, 1)),
                },
                Op::Drop(p) => MetaRecord::Drop { path: PATHS[p].into() },
                // rename(2) never moves a node below itself.
                Op::Move(a, b) if PATHS[b].starts_with(&format!("{}/", PATHS[a])) || PATHS[a].is_empty() || PATHS[b].is_empty() => continue,
                Op::Move(a, b) => MetaRecord::Move { from: PATHS[a].into(), to: PATHS[b].into() },
                Op::Reopen => {
                    drop(store);
                    store = MetaStore::open(&path, false).unwrap();
                    continue;
                }
            };
            model_apply(&mut model, &record);
            store.apply(record).unwrap();
            let got: BTreeMap<String, Meta> =
                store.map.iter().map(|(p, m)| (p.clone(), *m)).collect();
            prop_assert_eq!(&got, &model);
        }
        drop(store);
        let (reread, _) = MetaLog::read(&path).unwrap();
        let got: BTreeMap<String, Meta> = reread.iter().map(|(p, m)| (p.clone(), *m)).collect();
        prop_assert_eq!(got, model);
    }
}
