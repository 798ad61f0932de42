//! Housekeeping of files gix leaves behind: the `.keep` files beside packs this store wrote,
//! and temp files of killed writers.
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

/// Whether `name` is what the `tempfile` crate (gix's loose-object and pack writers) names a
/// temp file by default: `.tmp` and six ASCII letters or digits, nothing else.
fn is_gix_temp_name(name: &std::ffi::OsStr) -> bool {
    let name = name.as_encoded_bytes();
    name.len() == 10
        && name.starts_with(b".tmp")
        && name[4..].iter().all(|b| b.is_ascii_alphanumeric())
}
