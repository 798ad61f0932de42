//! Convergence property test of the merge layer: N simulated nodes (separate repositories in one
//! process) make random sets, deletes and commits, and exchange heads pairwise under a seeded
//! schedule (objects moved with db's transfer verbs, as gossip moves them, then each side
//! merges the other's pre-exchange head). Every exchange must leave both nodes on the same commit (merge is commutative), a
//! second exchange must be a no-op (idempotent), and once every pair has exchanged after the
//! last write, all nodes hold the same commit and tree. Under KeepBoth a checker proves that no
//! committed value was lost.
//!
//! Seeds per strategy: `GITDB_MERGE_SEEDS` (default 200); first seed: `GITDB_MERGE_SEED0`.

use std::cell::Cell;
use std::collections::BTreeMap;

use gitdb::db::DiffKind;
use gitdb::merge::{MergeOutcome, Resolution, Strategy, merge};
use gitdb::store::ObjectId;
use gitdb::{GitDb, NodeId};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Node {
    db: GitDb,
    skew: u64,
}

/// One committed write: the commit, the key, and the value (None: deleted).
struct Write {
    commit: ObjectId,
    key: String,
    value: Option<Vec<u8>>,
}

const KEYS: &[&str] = &["a", "b", "c", "d", "d/e", "d/f", "g/h/i", "g/h/j", "g"];

fn strategies() -> Vec<Strategy> {
    vec![
        Strategy::LastWriteWins,
        Strategy::KeepBoth,
        // A pure resolver: the larger value wins, a delete loses; key "c" always fails (falls
        // back to KeepBoth).
        Strategy::custom(|case| {
            if case.key == "c" {
                return Resolution::Failed("test resolver refuses c".into());
            }
            let v = |i: usize| case.sides[i].value.as_ref().map(|c| c.data.to_vec());
            match v(0).max(v(1)) {
                Some(data) => Resolution::Value(data),
                None => Resolution::Delete,
            }
        }),
    ]
}

fn seeds() -> (u64, u64) {
    let n = std::env::var("GITDB_MERGE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let first = std::env::var("GITDB_MERGE_SEED0")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (first, n)
}

thread_local! {
    /// Merge commits made by exchanges in this test, and of those, ones with new conflicts.
    static MERGES: Cell<usize> = const { Cell::new(0) };
    static CONFLICTED: Cell<usize> = const { Cell::new(0) };
}

/// Moves `head` and what it needs from `from` into `to`, as a gossip pull does.
fn copy(to: &GitDb, from: &GitDb, head: ObjectId) {
    let haves = to.haves(&[]).unwrap();
    let mut rx = to.receiver().unwrap();
    from.export(head, &haves, &mut |item| rx.add(item)).unwrap();
    rx.finish(head).unwrap();
}

/// Copies heads both ways, then each node merges the other's pre-exchange head.
fn exchange(a: &Node, b: &Node, s: &Strategy, ctx: &str) {
    let (Some(ha), Some(hb)) = (a.db.head(), b.db.head()) else {
        for (to, from) in [(a, b), (b, a)] {
            if let Some(h) = from.db.head() {
                copy(&to.db, &from.db, h);
                merge(&to.db, h, None, s, 0).unwrap();
            }
        }
        assert_eq!(a.db.head(), b.db.head(), "{ctx}");
        return;
    };
    copy(&a.db, &b.db, hb);
    copy(&b.db, &a.db, ha);
    let oa = merge(&a.db, hb, None, s, 0).unwrap();
    let ob = merge(&b.db, ha, None, s, 0).unwrap();
    assert_eq!(
        a.db.head(),
        b.db.head(),
        "{ctx}: exchange diverged: {oa:?} / {ob:?}"
    );
    if let MergeOutcome::Merged { conflicts, .. } = &oa {
        MERGES.set(MERGES.get() + 1);
        if !conflicts.is_empty() {
            CONFLICTED.set(CONFLICTED.get() + 1);
        }
    }
    if std::env::var("GITDB_MERGE_DEBUG").is_ok() {
        let h = a.db.head().unwrap();
        eprintln!(
            "{ctx}: ha={ha} hb={hb} -> {h} {oa:?} / {ob:?}; hb<=h: {}",
            a.db.descends_from(h, hb).unwrap(),
        );
    }
    let again = merge(&a.db, hb, None, s, 0).unwrap();
    assert_eq!(again, MergeOutcome::NoOp, "{ctx}: merging again");
}

fn run(seed: u64, strategy: &Strategy) {
    let ctx = format!("strategy {strategy:?} seed {seed}");
    let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0xD1B5_4A32_D192_ED03);
    // tmpfs when there is one: the journal's fsyncs dominate otherwise.
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let n = 3 + rng.below(2) as usize;
    let nodes: Vec<Node> = (0..n)
        .map(|i| Node {
            db: GitDb::open(
                dir.path().join(format!("n{i}.git")),
                NodeId::new(&format!("n{i}")).unwrap(),
                Default::default(),
            )
            .unwrap(),
            skew: rng.below(3000),
        })
        .collect();
    let mut writes: Vec<Write> = Vec::new();
    let mut time = 1_000_000u64;
    let mut counter = 0;
    let commit = |node: &Node, time: u64, writes: &mut Vec<Write>| {
        let parent = node.db.head();
        if let gitdb::CommitOutcome::Committed { id, .. } =
            node.db.commit("sim", time + node.skew).unwrap()
        {
            for c in node.db.diff_heads(parent, Some(id)).unwrap() {
                let value = match c.change {
                    DiffKind::Deleted => None,
                    _ => node.db.get_at(&id.to_string(), &c.key).unwrap(),
                };
                writes.push(Write {
                    commit: id,
                    key: c.key,
                    value: value.map(|v| v.to_vec()),
                });
            }
        }
    };
    let steps = 30 + rng.below(20);
    for _ in 0..steps {
        time += rng.below(4);
        let i = rng.below(n as u64) as usize;
        let key = KEYS[rng.below(KEYS.len() as u64) as usize];
        match rng.below(100) {
            0..40 => {
                counter += 1;
                let _ = nodes[i].db.set(key, format!("v{i}-{counter}\n").as_bytes());
            }
            40..50 => {
                let _ = if rng.below(2) == 0 {
                    nodes[i].db.delete(key)
                } else {
                    nodes[i].db.delete_prefix(key)
                };
            }
            50..75 => commit(&nodes[i], time, &mut writes),
            _ => {
                let j = (i + 1 + rng.below(n as u64 - 1) as usize) % n;
                exchange(&nodes[i], &nodes[j], strategy, &ctx);
            }
        }
    }
    // Last writes committed, then rounds of exchanges between every pair until all agree.
    for node in &nodes {
        commit(node, time, &mut writes);
    }
    let mut pairs: Vec<(usize, usize)> = (0..n)
        .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
        .collect();
    let mut rounds = 0;
    while nodes.iter().any(|x| x.db.head() != nodes[0].db.head()) {
        rounds += 1;
        assert!(rounds <= 3, "{ctx}: no convergence after {rounds} rounds");
        for k in (1..pairs.len()).rev() {
            pairs.swap(k, rng.below(k as u64 + 1) as usize);
        }
        for &(i, j) in &pairs {
            exchange(&nodes[i], &nodes[j], strategy, &ctx);
        }
    }
    let head = nodes[0].db.head();
    let tree = head.map(|h| nodes[0].db.commit_info(h).unwrap().tree);
    for x in &nodes {
        assert_eq!(x.db.head(), head, "{ctx}");
        assert_eq!(
            x.db.head().map(|h| x.db.commit_info(h).unwrap().tree),
            tree,
            "{ctx}"
        );
    }
    if let (Strategy::KeepBoth, Some(head)) = (strategy, head) {
        check_nothing_lost(&nodes[0].db, head, &writes, &ctx);
    }
}

/// Each committed value is in the final tree (as is, inside conflict markers, or moved to a
/// sibling), or some write of the same key causally followed it.
fn check_nothing_lost(db: &GitDb, head: ObjectId, writes: &[Write], ctx: &str) {
    let rev = head.to_string();
    let finals: BTreeMap<String, Vec<u8>> = db
        .list_recursive_at(&rev)
        .unwrap()
        .into_iter()
        .map(|key| {
            let value = db
                .get_at(&rev, &key)
                .unwrap()
                .expect("a listed key has a value");
            (key, value.to_vec())
        })
        .collect();
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    for w in writes {
        let Some(v) = &w.value else { continue };
        if finals.values().any(|f| contains(f, v)) {
            continue;
        }
        let overwritten = writes.iter().any(|w2| {
            w2.key == w.key
                && w2.commit != w.commit
                && db.descends_from(w2.commit, w.commit).unwrap()
        });
        assert!(
            overwritten,
            "{ctx}: value {:?} of {} written by {} was lost",
            String::from_utf8_lossy(v),
            w.key,
            w.commit
        );
    }
}

fn run_seeds(which: usize) {
    let (first, n) = seeds();
    let s = &strategies()[which];
    for seed in first..first + n {
        run(seed, s);
    }
    eprintln!(
        "{s:?}: {n} seeds, {} merge commits, {} with new conflicts",
        MERGES.get(),
        CONFLICTED.get()
    );
    assert!(n < 10 || MERGES.get() > n as usize, "too few real merges");
}

#[test]
fn convergence_last_write_wins() {
    run_seeds(0);
}

#[test]
fn convergence_keep_both_loses_nothing() {
    run_seeds(1);
    assert!(seeds().1 < 10 || CONFLICTED.get() > 0);
}

#[test]
fn convergence_custom() {
    run_seeds(2);
}
