//! Fuzz target for what an authenticated peer sends in a pull: blobs, whole trees (hostile
//! names, modes that disagree with what they name), commits with edits (hostile paths) or
//! whole, fed to the real importer of a fresh repository. The input drives a generator of
//! such items, so most of them are well formed enough to reach the checks that matter.
//!
//! Invariant: whatever the importer accepts is safe to check out and to mount. Every commit
//! it took has its whole tree present, no entry below it has a name a checkout or the mount
//! must refuse (`.`, `..`, `/`, NUL, a spelling of `.git`), its root holds no `.gitdb`, and
//! every entry names an object of the kind its mode says.

use crate::store::{
    CacheConfig, EditBlob, EntryEdit, Importer, Item, ObjectId, ObjectKind, Store, TreeEdit,
    ValueMode,
};

use super::Bytes;

const NAMES: &[&[u8]] = &[
    b"a",
    b"b",
    b"k",
    b".",
    b"..",
    b".git",
    b".GIT",
    b"git~1",
    b".gitdb",
    b"a/b",
    b"a\0b",
    b"",
    b".git.",
    b"%2e",
    b".gitmodules",
    b"\xff\xfe",
];
/// Modes as raw tree bytes spell them.
const MODES: &[&[u8]] = &[
    b"100644", b"100755", b"120000", b"40000", b"160000", b"100664",
];

fn name(input: &mut Bytes) -> Vec<u8> {
    if input.below(8) == 0 {
        input.take(12).to_vec()
    } else {
        input.pick(NAMES).to_vec()
    }
}

fn path(input: &mut Bytes) -> String {
    let n = 1 + input.below(3);
    let parts: Vec<String> = (0..n)
        .map(|_| String::from_utf8_lossy(&name(input)).into_owned())
        .collect();
    parts.join("/")
}

thread_local! {
    /// One repository per fuzzing thread (creating one per input costs ~30 ms): objects of
    /// earlier inputs stay, as a real node's do. Removed when the thread ends.
    static REPO: Option<(tempfile::TempDir, Store)> = tempfile::tempdir().ok().and_then(|d| {
        let s = Store::open_or_create(&d.path().join("r.git"), CacheConfig::default()).ok()?;
        Some((d, s))
    });
}

/// Runs one generated transfer into this thread's repository.
pub fn importer(data: &[u8]) {
    REPO.with(|r| match r {
        Some((_, store)) => run(store, data),
        None => panic!("cannot create a repository for the fuzz target"),
    })
}

fn run(store: &Store, data: &[u8]) {
    let mut input = Bytes::new(data);
    let mut imp = Importer::new(store);
    // What this transfer sent (accepted or not): candidates for later references.
    let mut objects: Vec<ObjectId> = vec![store.empty_tree()];
    let mut commits: Vec<ObjectId> = Vec::new();
    let mut trees: Vec<ObjectId> = vec![store.empty_tree()];
    for _ in 0..12 {
        if input.is_empty() {
            break;
        }
        let item = match input.below(4) {
            0 => {
                let blob = input.take(40).to_vec();
                if let Ok(id) = store.hash_blob(&blob) {
                    objects.push(id);
                }
                Item::Blob(blob)
            }
            1 => {
                let mut raw = Vec::new();
                let mut entries: Vec<(Vec<u8>, &[u8], ObjectId)> = Vec::new();
                for _ in 0..1 + input.below(3) {
                    let mode = *input.pick(MODES);
                    let id = *input.pick(&objects);
                    entries.push((name(&mut input), mode, id));
                }
                // Git's order (a directory sorts as if its name ended in '/'), mostly.
                if input.below(4) != 0 {
                    entries.sort_by_key(|(n, m, _)| {
                        let mut k = n.clone();
                        if *m == b"40000" {
                            k.push(b'/');
                        }
                        k
                    });
                }
                for (n, m, id) in &entries {
                    raw.extend_from_slice(m);
                    raw.push(b' ');
                    raw.extend_from_slice(n);
                    raw.push(0);
                    raw.extend_from_slice(id.as_slice());
                }
                if let Ok(id) =
                    gix::objs::compute_hash(gix::hash::Kind::Sha1, ObjectKind::Tree, &raw)
                {
                    objects.push(id);
                    trees.push(id);
                }
                Item::Tree(raw)
            }
            k => {
                let parent = if commits.is_empty() || input.below(4) == 0 {
                    None
                } else {
                    Some(*input.pick(&commits))
                };
                let base = parent
                    .and_then(|p| store.commit_info(p).ok())
                    .map_or(store.empty_tree(), |i| i.tree);
                let (tree, edits) = if k == 2 {
                    let mut edits = Vec::new();
                    for _ in 0..1 + input.below(3) {
                        let p = path(&mut input);
                        let mode = *input.pick(&[
                            ValueMode::Regular,
                            ValueMode::Executable,
                            ValueMode::Symlink,
                        ]);
                        let value = match input.below(3) {
                            0 => None,
                            1 => Some((mode, EditBlob::Inline(input.take(20).to_vec()))),
                            _ => Some((mode, EditBlob::Known(*input.pick(&objects)))),
                        };
                        edits.push(EntryEdit { path: p, value });
                    }
                    // The tree a faithful sender would name: the receiver's own rebuild.
                    let resolved: Vec<(String, Option<(ValueMode, ObjectId)>)> = edits
                        .iter()
                        .map(|e| {
                            let v = e.value.as_ref().map(|(m, b)| match b {
                                EditBlob::Known(id) => (*m, *id),
                                EditBlob::Inline(d) => {
                                    (*m, store.hash_blob(d).unwrap_or(store.empty_tree()))
                                }
                            });
                            (e.path.clone(), v)
                        })
                        .collect();
                    let tree = store
                        .hash_tree(
                            base,
                            resolved.iter().map(|(p, v)| match v {
                                Some((mode, id)) => TreeEdit::Upsert {
                                    path: p,
                                    mode: *mode,
                                    id: *id,
                                },
                                None => TreeEdit::Remove { path: p },
                            }),
                        )
                        .unwrap_or(base);
                    (tree, Some(edits))
                } else {
                    (*input.pick(&trees), None)
                };
                let mut data = format!("tree {tree}\n");
                if let Some(p) = parent {
                    data.push_str(&format!("parent {p}\n"));
                }
                data.push_str("author f <f@f> 1 +0000\ncommitter f <f@f> 1 +0000\n\nfuzz\n");
                let data = data.into_bytes();
                if let Ok(id) =
                    gix::objs::compute_hash(gix::hash::Kind::Sha1, ObjectKind::Commit, &data)
                {
                    objects.push(id);
                    commits.push(id);
                }
                Item::Commit { data, edits }
            }
        };
        let is_commit = matches!(item, Item::Commit { .. });
        let data_id = match &item {
            Item::Commit { data, .. } => {
                gix::objs::compute_hash(gix::hash::Kind::Sha1, ObjectKind::Commit, data).ok()
            }
            _ => None,
        };
        if imp.add(item).is_err() {
            // A refused item ends the transfer, as the exchange does.
            return;
        }
        if is_commit && let Some(id) = data_id {
            check_commit(store, id);
        }
    }
}

/// Panics unless the accepted commit `id` is safe (see the module docs).
fn check_commit(store: &Store, id: ObjectId) {
    let info = match store.commit_info(id) {
        Ok(i) => i,
        Err(e) => panic!("accepted commit {id} cannot be read: {e}"),
    };
    let mut stack = vec![(info.tree, true)];
    while let Some((tree, root)) = stack.pop() {
        let (kind, raw) = match store.raw_object(tree) {
            Ok(o) => o,
            Err(e) => panic!("commit {id}: tree {tree} is missing: {e}"),
        };
        assert_eq!(kind, ObjectKind::Tree, "commit {id}: {tree} is not a tree");
        let parsed = match gix::objs::TreeRef::from_bytes(&raw, gix::hash::Kind::Sha1) {
            Ok(t) => t,
            Err(e) => panic!("commit {id}: tree {tree} does not parse: {e}"),
        };
        for e in &parsed.entries {
            let n: &[u8] = e.filename.as_ref();
            if let Err(why) = Importer::entry_name_ok(n) {
                panic!("commit {id}: tree {tree}: {why}");
            }
            assert!(!(root && n == b".gitdb"), "commit {id}: .gitdb at the root");
            let child = e.oid.to_owned();
            if e.mode.is_commit() {
                continue;
            }
            let kind = match store.raw_object(child) {
                Ok((k, _)) => k,
                Err(err) => panic!("commit {id}: {child} is missing: {err}"),
            };
            if e.mode.is_tree() {
                assert_eq!(kind, ObjectKind::Tree, "commit {id}: {child}");
                stack.push((child, false));
            } else {
                assert_eq!(kind, ObjectKind::Blob, "commit {id}: {child}");
            }
        }
    }
}
