//! Housekeeping of files gix leaves behind: the `.keep` files beside packs this store wrote,
//! temp files of killed writers, and the ref lock files of a node killed while it moved a ref.
//!
//! Apart from writing because these run at other moments (after a ref names the objects, at
//! open) and must never touch what stock git or another live writer owns.

use super::Store;

impl Store {
    /// Removes the `.keep` files gix-pack left beside the packs this store wrote. Call once a
    /// ref names their objects (a commit moved the branch): from then on `git gc` may repack
    /// them like any other pack, while before it a `git repack -a -d` would have dropped them
    /// as unreachable.
    pub fn release_packs(&self) {
        let keeps = std::mem::take(&mut *self.keeps.lock().unwrap_or_else(|p| p.into_inner()));
        if keeps.is_empty() {
            // No pack of ours was written since: nothing to release, and no new pack to count
            // (a commit of few values writes loose objects, and must not list a directory).
            return;
        }
        for keep in keeps {
            match std::fs::remove_file(&keep) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => log::warn!("cannot remove {}: {e}", keep.display()),
            }
        }
        // The packs just released are the ones a repack may now roll up.
        self.maybe_repack();
    }
    /// Removes temp files a killed gix writer left in `objects/` and `objects/pack/` (loose
    /// objects and packs being written), if older than `min_age`. Only gix's names are
    /// touched — tempfile's `.tmp` and six letters or digits — never stock git's
    /// (`tmp_obj_*`, `tmp_pack_*`, `tmp_idx_*`, `.tmp-<pid>-pack*` from repack), and the age
    /// spares a file another gix process is writing right now. Returns how many went.
    pub fn remove_stale_temp_files(&self, min_age: std::time::Duration) -> usize {
        let objects = self.git_dir.join("objects");
        let mut removed = 0;
        for dir in [objects.join("pack"), objects] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if !is_gix_temp_name(&entry.file_name()) {
                    continue;
                }
                let old = entry
                    .metadata()
                    .ok()
                    .filter(|m| m.is_file())
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age >= min_age);
                if !old {
                    continue;
                }
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    Err(e) => log::warn!("cannot remove {}: {e}", entry.path().display()),
                }
            }
        }
        if removed > 0 {
            log::info!(
                "removed {removed} stale temp file(s) under {}",
                self.git_dir.display()
            );
        }
        removed
    }
}

impl Store {
    /// Removes the lock files of the refs a node writes (`branch_ref`, `HEAD`, `packed-refs`
    /// and everything under `refs/gitdb/`) that outlast `grace`. Call at open, holding the
    /// writer lock: a node killed between locking a ref and renaming the lock into place
    /// leaves `<ref>.lock` behind, and git's rule (a lock blocks every update until someone
    /// removes it) would then fail every commit of the restarted node. A lock that a live
    /// process holds — stock git moving the branch as the node starts — goes within
    /// milliseconds, so only one that stays, unchanged, through `grace` is taken for stale.
    /// Returns how many went.
    pub fn remove_stale_ref_locks(&self, branch_ref: &str, grace: std::time::Duration) -> usize {
        let mut locks: Vec<std::path::PathBuf> = [
            format!("{branch_ref}.lock"),
            "HEAD.lock".to_owned(),
            "packed-refs.lock".to_owned(),
        ]
        .iter()
        .map(|rel| self.git_dir.join(rel))
        .filter(|p| p.is_file())
        .collect();
        collect_locks(&self.git_dir.join("refs").join("gitdb"), &mut locks);
        if locks.is_empty() {
            return 0;
        }
        let stamp = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let mut seen: Vec<_> = locks.into_iter().map(|p| (stamp(&p), p)).collect();
        let deadline = std::time::Instant::now() + grace;
        loop {
            // A lock that went, or was taken anew, belongs to a live writer.
            seen.retain(|(when, p)| when.is_some() && stamp(p) == *when);
            if seen.is_empty() || std::time::Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let mut removed = 0;
        for (_, lock) in seen {
            match std::fs::remove_file(&lock) {
                Ok(()) => {
                    removed += 1;
                    log::warn!(
                        "removed the stale ref lock {} (left by a writer that died)",
                        lock.display()
                    );
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => log::warn!("cannot remove {}: {e}", lock.display()),
            }
        }
        removed
    }
}

/// Every `*.lock` file below `dir`, into `out`.
fn collect_locks(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => collect_locks(&path, out),
            Ok(t) if t.is_file() && path.extension().is_some_and(|e| e == "lock") => out.push(path),
            _ => {}
        }
    }
}

/// Whether `name` is what the `tempfile` crate (gix's loose-object and pack writers) names a
/// temp file by default: `.tmp` and six ASCII letters or digits, nothing else.
fn is_gix_temp_name(name: &std::ffi::OsStr) -> bool {
    let name = name.as_encoded_bytes();
    name.len() == 10
        && name.starts_with(b".tmp")
        && name[4..].iter().all(|b| b.is_ascii_alphanumeric())
}
