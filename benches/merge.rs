//! Merge benchmark: two heads that each changed 10 keys (2 of them the same keys, so there are
//! real conflicts) of a 1,000-key and of a 100,000-key store. Keys are laid out with a fan-out of
//! 100 (`TT/MM/NNNNNN`: top, middle and leaf directories of at most 100 entries), as a store
//! grows in depth rather than in directory size. The merge cost should follow the changed keys,
//! not the store size. Two key choices:
//! - `same`: the same 10 keys per side in both stores (10 different leaf directories);
//! - `spread`: keys spread over the whole store (in the 100k store every key in its own top
//!   directory, so more trees are rewritten than in the 1k store, whose keys share one top).
//!
//! `cargo bench --bench merge` — criterion measures the warm merge (`merge_commits`: merge
//! bases, both tree diffs, per-key resolution, tree and commit writes; no ref move); a cold
//! merge on a freshly opened repository (empty caches) is timed by hand and printed first.

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use gitdb::db::{CommitStamp, Hlc, NodeId, VectorClock};
use gitdb::merge::{Strategy, merge_commits};
use gitdb::store::{CacheConfig, ObjectId, Signature, Store, TreeEdit, ValueMode};

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    x: ObjectId,
    y: ObjectId,
}

fn key(i: usize) -> String {
    format!("{:02}/{:02}/{:06}", i / 10_000, (i / 100) % 100, i)
}

fn commit(store: &Store, tree: ObjectId, parents: &[ObjectId], node: &str, n: u64) -> ObjectId {
    let node = NodeId::new(node).unwrap();
    let mut clock = VectorClock::new();
    for _ in 0..n {
        clock.increment(&node);
    }
    let stamp = CommitStamp {
        node: Some(node.clone()),
        clock,
        hlc: Some(Hlc {
            millis: 1_764_000_000_000 + n,
            counter: 0,
        }),
    };
    let sig = Signature {
        name: node.to_string(),
        email: format!("{node}@gitdb"),
        seconds: 1_764_000_000,
    };
    store
        .write_commit(tree, parents, &sig, &format!("c\n\n{}", stamp.trailers()))
        .unwrap()
}

fn fixture(n: usize, stride: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo.git");
    let store = Store::open_or_create(&path, CacheConfig::default()).unwrap();
    // Values repeat (100 distinct blobs): the trees, not the blobs, make the store's size.
    let blobs: Vec<ObjectId> = (0..100)
        .map(|i| store.write_blob(format!("value {i}\n").as_bytes()).unwrap())
        .collect();
    let keys: Vec<String> = (0..n).map(key).collect();
    let edits = keys.iter().enumerate().map(|(i, k)| TreeEdit::Upsert {
        path: k,
        mode: ValueMode::Regular,
        id: blobs[i % 100],
    });
    let base_tree = store.write_tree(store.empty_tree(), edits).unwrap();
    let base = commit(&store, base_tree, &[], "node-a", 1);
    let side = |node: &str, offset: usize, salt: &str| {
        let changed: Vec<(String, ObjectId)> = (0..10)
            .map(|j| {
                let i = (j * stride + offset) % n;
                let id = store
                    .write_blob(format!("{salt} {j}\n").as_bytes())
                    .unwrap();
                (key(i), id)
            })
            .collect();
        let tree = store
            .write_tree(
                base_tree,
                changed.iter().map(|(k, id)| TreeEdit::Upsert {
                    path: k,
                    mode: ValueMode::Regular,
                    id: *id,
                }),
            )
            .unwrap();
        commit(&store, tree, &[base], node, 2)
    };
    // Side y's first 2 keys are side x's keys 8 and 9: conflicts.
    let x = side("node-a", 0, "x");
    let y = side("node-b", 8 * stride, "y");
    Fixture {
        _dir: dir,
        path,
        x,
        y,
    }
}

fn cold(f: &Fixture, strategy: &Strategy) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..5 {
        let store = Store::open(&f.path, CacheConfig::default()).unwrap();
        let t = Instant::now();
        black_box(merge_commits(&store, f.x, f.y, strategy).unwrap());
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
    }
    best
}

fn bench(c: &mut Criterion) {
    // (name, keys, stride between changed keys)
    let cases = [
        ("same", 1_000usize, 101usize),
        ("same", 100_000, 101),
        ("spread", 1_000, 97),
        ("spread", 100_000, 9_901),
    ];
    let fixtures: Vec<(String, Fixture)> = cases
        .iter()
        .map(|&(name, n, stride)| (format!("{n}_keys_{name}"), fixture(n, stride)))
        .collect();
    for (n, f) in &fixtures {
        let store = Store::open(Path::new(&f.path), CacheConfig::default()).unwrap();
        let m = merge_commits(&store, f.x, f.y, &Strategy::KeepBoth).unwrap();
        assert_eq!(m.new_conflicts.len(), 2, "{m:?}");
        for s in [Strategy::LastWriteWins, Strategy::KeepBoth] {
            println!("cold merge, {n}, {s:?}: best of 5 = {:.3} ms", cold(f, &s));
        }
    }
    let mut group = c.benchmark_group("merge_10_changed_keys_each");
    for (n, f) in &fixtures {
        let store = Store::open(&f.path, CacheConfig::default()).unwrap();
        for s in [Strategy::LastWriteWins, Strategy::KeepBoth] {
            group.bench_function(format!("{n}_{s:?}"), |b| {
                b.iter(|| black_box(merge_commits(&store, f.x, f.y, &s).unwrap()))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
