//! A model-based fuzz target in redb's manner: random set / delete / rename / commit /
//! rollback / sync / reopen on a real [`GitDb`], against a `BTreeMap` model, with the journal's
//! and the object store's writes failing after N more writes ([`crate::fault`], torn journal
//! appends included), and a check after every reopen that the db and the model agree.
//!
//! What a result promises, the rules the model holds the db to (the API's docs say the same):
//! - `Ok` from set, delete, rename: the change is made, and survives a reopen.
//! - `Err` from set, delete, rename or sync (an injected I/O error): nothing changed; a torn
//!   journal append is cut back and never replays.
//! - `Ok(Committed)` from commit: the committed state is what was visible, and survives.
//! - `Err` from commit: what is visible is unchanged; whether it is committed is not known
//!   (the ref may have moved before a later fsync failed). So the model keeps both outcomes
//!   as candidates and reopens at once, where the db's state must be one of them.
//! - `Err` from rollback: it may or may not have happened (the journal may be emptied on disk
//!   before its fsync failed): both are candidates, and the model reopens at once.
//! - A reopen with faults off always succeeds.
//!
//! The state compared after each reopen: every visible key and value, and every key and value
//! of the head commit.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::db::{DbError, GitDb, NodeId};

use super::Bytes;

const KEYS: &[&str] = &["k0", "k1", "k2", "d/k0", "d/k1", "e/k0"];
const DIRS: &[&str] = &["d", "e"];

type Map = BTreeMap<String, Vec<u8>>;

/// Operations run, injected failures seen, and reopens checked, over the process (reported
/// by the stable test, so a run that never reached a fault is seen as such).
static OPS: AtomicU64 = AtomicU64::new(0);
static FAILED: AtomicU64 = AtomicU64::new(0);
static CHECKED: AtomicU64 = AtomicU64::new(0);

/// (operations, injected failures, reopens checked) so far.
pub fn stats() -> (u64, u64, u64) {
    let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
    (l(&OPS), l(&FAILED), l(&CHECKED))
}

fn injected_seen(e: &DbError) -> bool {
    let yes = injected(e);
    if yes {
        FAILED.fetch_add(1, Ordering::Relaxed);
    }
    yes
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    committed: Map,
    visible: Map,
}

fn injected(e: &DbError) -> bool {
    e.io_error().is_some_and(crate::fault::is_injected)
        || e.to_string().contains(crate::fault::INJECTED)
}

/// What the model says a rename does to `m`: `Err(())` for a refusal.
fn rename(m: &Map, from: &str, to: &str) -> Result<Map, ()> {
    let mut out = m.clone();
    if DIRS.contains(&from) {
        let under = |d: &str| m.keys().filter(|k| k.starts_with(&format!("{d}/"))).count();
        if under(from) == 0 || under(to) > 0 {
            return Err(());
        }
        for (k, v) in m.iter().filter(|(k, _)| k.starts_with(&format!("{from}/"))) {
            out.remove(k);
            out.insert(format!("{to}/{}", &k[from.len() + 1..]), v.clone());
        }
        return Ok(out);
    }
    let v = m.get(from).ok_or(())?.clone();
    out.remove(from);
    out.insert(to.to_owned(), v);
    Ok(out)
}

fn read_state(db: &GitDb) -> State {
    let read = |keys: Vec<String>, get: &dyn Fn(&str) -> Option<Vec<u8>>| -> Map {
        keys.into_iter()
            .map(|k| {
                let v = get(&k).unwrap_or_else(|| panic!("{k} is listed but has no value"));
                (k, v)
            })
            .collect()
    };
    let visible = match db.list_recursive("") {
        Ok(l) => read(l.into_iter().map(|(k, _)| k).collect(), &|k| {
            db.get(k).ok().flatten().map(|b| b.to_vec())
        }),
        Err(e) => panic!("listing the db: {e}"),
    };
    let committed = match db.head() {
        None => Map::new(),
        Some(h) => {
            let rev = h.to_string();
            match db.list_recursive_at(&rev) {
                Ok(l) => read(l, &|k| {
                    db.get_at(&rev, k).ok().flatten().map(|b| b.to_vec())
                }),
                Err(e) => panic!("listing the head {rev}: {e}"),
            }
        }
    };
    State { committed, visible }
}

/// Runs the operations `data` describes on a fresh db.
pub fn db(data: &[u8]) {
    let Ok(dir) = tempfile::tempdir() else {
        panic!("no temp dir for the model target");
    };
    let path = dir.path().join("repo.git");
    let open = || match GitDb::open(&path, NodeId::new("m").ok()?, Default::default()) {
        Ok(db) => Some(db),
        Err(e) => panic!("the db does not open (faults off): {e}"),
    };
    let Some(mut db) = open() else {
        panic!("a bad node id");
    };
    let mut input = Bytes::new(data);
    // The states the db may be in: one, except between an uncertain failure and a reopen.
    let mut candidates = vec![State {
        committed: Map::new(),
        visible: Map::new(),
    }];
    let mut faults: Option<crate::fault::Armed> = None;
    let mut now = 1_000u64;
    for _ in 0..48 {
        if input.is_empty() {
            break;
        }
        let mut reopen = false;
        OPS.fetch_add(1, Ordering::Relaxed);
        match input.below(12) {
            0..=2 => {
                let key = *input.pick(KEYS);
                let value = if input.below(16) == 0 {
                    // Past the journal's inline limit: written as a blob when set.
                    vec![input.byte(); 70 << 10]
                } else {
                    input.take(12).to_vec()
                };
                match db.set(key, &value) {
                    Ok(()) => {
                        for c in &mut candidates {
                            c.visible.insert(key.to_owned(), value.clone());
                        }
                    }
                    Err(e) if injected_seen(&e) => {}
                    Err(e) => panic!("set {key}: {e}"),
                }
            }
            3 => {
                let key = *input.pick(KEYS);
                match db.delete(key) {
                    Ok(()) => {
                        for c in &mut candidates {
                            assert!(c.visible.remove(key).is_some(), "deleted absent {key}");
                        }
                    }
                    Err(e) if injected_seen(&e) => {}
                    Err(DbError::NotFound { .. }) => {
                        candidates.retain(|c| !c.visible.contains_key(key));
                        assert!(!candidates.is_empty(), "delete {key}: not found, but it is");
                    }
                    Err(e) => panic!("delete {key}: {e}"),
                }
            }
            4 => {
                let (from, to) = if input.below(3) == 0 {
                    let from = *input.pick(DIRS);
                    (from, if from == "d" { "e" } else { "d" })
                } else {
                    (*input.pick(KEYS), *input.pick(KEYS))
                };
                match db.rename(from, to) {
                    Ok(()) => {
                        for c in &mut candidates {
                            c.visible = match rename(&c.visible, from, to) {
                                Ok(m) => m,
                                Err(()) => panic!("rename {from} {to}: the model refuses it"),
                            };
                        }
                    }
                    Err(e) if injected_seen(&e) => {}
                    Err(e) => {
                        candidates.retain(|c| rename(&c.visible, from, to).is_err());
                        assert!(!candidates.is_empty(), "rename {from} {to} refused: {e}");
                    }
                }
            }
            5 => {
                now += 1000;
                match db.commit("model", now) {
                    Ok(_) => {
                        for c in &mut candidates {
                            c.committed = c.visible.clone();
                        }
                    }
                    Err(e) if injected_seen(&e) => {
                        let done: Vec<State> = candidates
                            .iter()
                            .map(|c| State {
                                committed: c.visible.clone(),
                                visible: c.visible.clone(),
                            })
                            .collect();
                        candidates.extend(done);
                        reopen = true;
                    }
                    Err(e) => panic!("commit: {e}"),
                }
            }
            6 => match db.rollback() {
                Ok(_) => {
                    for c in &mut candidates {
                        c.visible = c.committed.clone();
                    }
                }
                Err(e) if injected_seen(&e) => {
                    let done: Vec<State> = candidates
                        .iter()
                        .map(|c| State {
                            committed: c.committed.clone(),
                            visible: c.committed.clone(),
                        })
                        .collect();
                    candidates.extend(done);
                    reopen = true;
                }
                Err(e) => panic!("rollback: {e}"),
            },
            7 => match db.sync() {
                Ok(()) => {}
                Err(e) if injected_seen(&e) => {}
                Err(e) => panic!("sync: {e}"),
            },
            8 | 9 => {
                // The old guard first: dropping it after arming would disarm the new plan.
                drop(faults.take());
                faults = Some(crate::fault::arm(
                    input.below(12) as u64,
                    input.below(2) == 0,
                ));
            }
            _ => reopen = true,
        }
        candidates.dedup();
        if reopen {
            faults = None;
            drop(db);
            db = match open() {
                Some(db) => db,
                None => unreachable!(),
            };
            let got = read_state(&db);
            assert!(
                candidates.contains(&got),
                "after a reopen the db holds {got:?}; the model allows {candidates:?}"
            );
            candidates = vec![got];
            CHECKED.fetch_add(1, Ordering::Relaxed);
        }
    }
    drop(faults);
}
