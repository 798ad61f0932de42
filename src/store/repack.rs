//! Keeping the number of packs bounded: a node that lives long writes a pack for every commit
//! of many new values and for every large gossip transfer, and without care their number only
//! grows.
//!
//! Two limits meet here. gix sizes its table of pack indices ("slots") when the repository is
//! opened; a long-running node that wrote more packs than that table holds could no longer
//! read the newest of them ("The object database has too few index slots": a soak run hit it
//! after 35 s, then served no gossip at all). And every pack is one more index searched by a
//! lookup that misses the caches. So the store opens with room for [`MIN_SLOTS`] indices, and
//! once the packs a ref names exceed [`AUTO_PACK_LIMIT`], it rolls the small ones up with
//! stock git's geometric repack (`git repack --geometric=2 -d`, git's own answer to many small
//! packs: each run rewrites only the packs that break a doubling progression of sizes, so its
//! cost follows the recent writes, not the store). Git is already a dependency of the node
//! (`--remote`, the merge tests) and its repack is what `git gc` runs beside us anyway; a
//! rewrite of it on gix-pack would be a second, less tried copy.
//!
//! What makes it safe beside the node's own work: packs still carrying gix's `.keep` (objects
//! no ref names yet, see [`Store::release_packs`]) are left out by `--geometric`; rolled-up
//! packs keep every object they held, reachable or not (`pack-objects --stdin-packs`), so
//! staged blobs survive; gix keeps the old packs mapped until it re-reads the directory and
//! finds their objects in the new pack; and git fsyncs what it writes (`core.fsync=all`).
//! One repack runs at a time, on a thread of its own, so no commit waits for it; the store
//! joins it when dropped.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;

use super::Store;

/// The pack indices gix can hold at once (its default is 32 plus 10% of what is on disk).
/// A slot costs a few words until a pack is loaded into it, and the repack below keeps the
/// count far under this, so this only has to absorb bursts and stock git's own packs.
pub(super) const MIN_SLOTS: usize = 1024;

/// Beyond this many packs a repack is started (git's `gc.autoPackLimit` is 50).
pub const AUTO_PACK_LIMIT: usize = 32;

impl Store {
    /// Starts a geometric repack in the background if the packs exceed [`AUTO_PACK_LIMIT`]
    /// and none is running. Cheap otherwise: one listing of `objects/pack`.
    pub fn maybe_repack(&self) {
        if count_packs(&self.git_dir) <= AUTO_PACK_LIMIT {
            return;
        }
        if self.repacking.swap(true, Ordering::AcqRel) {
            return;
        }
        let git_dir = self.git_dir.clone();
        let running = self.repacking.clone();
        let spawned = std::thread::Builder::new()
            .name("gitdb-repack".into())
            .spawn(move || {
                repack(&git_dir);
                running.store(false, Ordering::Release);
            });
        match spawned {
            Ok(handle) => {
                let mut slot = self.repack_thread.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(previous) = slot.replace(handle) {
                    // Finished: the flag was clear when this one started.
                    let _ = previous.join();
                }
            }
            Err(e) => {
                log::warn!("cannot start a repack: {e}");
                self.repacking.store(false, Ordering::Release);
            }
        }
    }

    /// Waits for a repack in flight, if any (tests, and the store's drop).
    pub fn wait_repack(&self) {
        let handle = self
            .repack_thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

/// How many packs (`*.idx`) the repository holds.
pub fn count_packs(git_dir: &Path) -> usize {
    std::fs::read_dir(git_dir.join("objects").join("pack"))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().as_encoded_bytes().ends_with(b".idx"))
                .count()
        })
        .unwrap_or(0)
}

fn repack(git_dir: &Path) {
    let before = count_packs(git_dir);
    let started = std::time::Instant::now();
    let mut cmd = Command::new("git");
    // Not orphaned by a killed node: it would race the restarted node's own repack.
    crate::children::die_with_parent(&mut cmd);
    let out = cmd
        .arg("--git-dir")
        .arg(git_dir)
        .args(["-c", "core.fsync=all", "-c", "core.fsyncMethod=fsync"])
        .args([
            "repack",
            "--geometric=2",
            "-d",
            "-q",
            "--no-write-bitmap-index",
        ])
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    match out {
        Ok(out) if out.status.success() => log::info!(
            "repacked {before} packs into {} in {:?}",
            count_packs(git_dir),
            started.elapsed()
        ),
        Ok(out) => log::warn!(
            "git repack --geometric=2 in {} failed ({}): {}",
            git_dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => log::warn!(
            "cannot run git repack in {} ({e}); packs keep accumulating (room for {MIN_SLOTS})",
            git_dir.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(pack: usize, i: usize) -> Vec<u8> {
        format!("pack {pack} blob {i}\n").into_bytes()
    }

    /// A long-lived store that wrote many packs reads every one of them, and the packs a ref
    /// would name get rolled up. Before: the 33rd pack of a store opened on an empty
    /// repository was unreadable ("too few index slots") and packs only accumulated.
    #[test]
    fn many_packs_stay_readable_and_get_rolled_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            Store::open_or_create(&dir.path().join("r.git"), Default::default()).expect("store");
        let packs = AUTO_PACK_LIMIT + 16;
        for p in 0..packs {
            let blobs: Vec<Vec<u8>> = (0..4).map(|i| blob(p, i)).collect();
            store
                .write_blobs_packed(blobs.iter().map(|b| &b[..]))
                .expect("pack");
            // Read at once, as a commit's readers do: the newest pack must be loadable.
            let id = store.hash_blob(&blobs[3]).expect("hash");
            assert_eq!(
                &store.blob(id).expect("newest pack readable")[..],
                &blobs[3][..]
            );
        }
        assert!(count_packs(store.git_dir()) >= packs);
        // What a commit does once its ref names the objects: release, then maybe repack.
        store.release_packs();
        store.wait_repack();
        let after = count_packs(store.git_dir());
        assert!(after <= AUTO_PACK_LIMIT, "{after} packs after the repack");
        // Read through the store that watched the packs go, and through a fresh one (no
        // cached blob can answer for a pack).
        let fresh = Store::open(store.git_dir(), Default::default()).expect("reopen");
        for s in [&store, &fresh] {
            for p in 0..packs {
                for i in 0..4 {
                    let data = blob(p, i);
                    let id = s.hash_blob(&data).expect("hash");
                    assert_eq!(&s.blob(id).expect("read after repack")[..], &data[..]);
                }
            }
        }
        let fsck = Command::new("git")
            .arg("--git-dir")
            .arg(store.git_dir())
            .args(["fsck", "--strict", "--no-dangling"])
            .output()
            .expect("git fsck");
        assert!(
            fsck.status.success(),
            "{}",
            String::from_utf8_lossy(&fsck.stderr)
        );
    }
}
