//! Uncompressed copies of large values, so that reading a big file through the mount is a
//! `pread` of a plain file instead of inflating the whole git object before the first byte.
//!
//! Git keeps every value zlib-compressed, and inflating runs at a few hundred MiB/s, far below
//! what the kernel can move through FUSE. So a value larger than [`SPILL_THRESHOLD`] is kept
//! here as a plain file named by its blob id, in `<git dir>/gitdb/values/`:
//! - the file a writer spilled to is renamed in when its flush stores the value (no copy);
//! - a value opened for reading that is not here yet is written here once.
//!
//! Files are content-addressed, so none is ever stale. The directory is a cache: it is bounded
//! (least recently used files go first) and anything in it may be deleted at any time, even
//! while mounted (open handles keep their file). Spill files of open handles live in
//! `<git dir>/gitdb/tmp/` (same filesystem, so adopting one is a rename); strays left by a
//! crash are removed at mount.
//!
//! [`SPILL_THRESHOLD`]: super::handles::SPILL_THRESHOLD

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tempfile::NamedTempFile;

use crate::db::ObjectId;

/// Default bound on the directory's size.
pub const DEFAULT_BUDGET: u64 = 1 << 30;

/// The large-value file cache of one mount.
pub struct ValueFiles {
    dir: PathBuf,
    tmp: PathBuf,
    budget: u64,
    lru: Mutex<Lru>,
}

/// Which files are present, by last use. Leaf lock.
#[derive(Default)]
struct Lru {
    total: u64,
    tick: u64,
    by_id: HashMap<ObjectId, (u64, u64)>,
    by_tick: BTreeMap<u64, ObjectId>,
}

impl Lru {
    fn touch(&mut self, id: ObjectId) -> bool {
        let Some((tick, len)) = self.by_id.get(&id).copied() else {
            return false;
        };
        self.by_tick.remove(&tick);
        self.tick += 1;
        self.by_tick.insert(self.tick, id);
        self.by_id.insert(id, (self.tick, len));
        true
    }

    fn insert(&mut self, id: ObjectId, len: u64) {
        if self.touch(id) {
            return;
        }
        self.tick += 1;
        self.by_tick.insert(self.tick, id);
        self.by_id.insert(id, (self.tick, len));
        self.total += len;
    }

    fn remove(&mut self, id: ObjectId) {
        if let Some((tick, len)) = self.by_id.remove(&id) {
            self.by_tick.remove(&tick);
            self.total -= len;
        }
    }

    /// The least recently used files to drop so that `total` fits in `budget`.
    fn over(&mut self, budget: u64) -> Vec<ObjectId> {
        let mut out = Vec::new();
        while self.total > budget {
            let Some((_, id)) = self.by_tick.pop_first() else {
                break;
            };
            if let Some((_, len)) = self.by_id.remove(&id) {
                self.total -= len;
            }
            out.push(id);
        }
        out
    }
}

impl ValueFiles {
    /// Opens (creating) the cache under `gitdb_dir`. The repository's writer (`owner`, who
    /// holds the writer lock) also removes spill files left by a previous run; a read-only
    /// mount beside it must not, since they may be the writer's open files.
    pub fn open(gitdb_dir: &Path, budget: u64, owner: bool) -> std::io::Result<ValueFiles> {
        let dir = gitdb_dir.join("values");
        let tmp = gitdb_dir.join("tmp");
        std::fs::create_dir_all(&dir)?;
        std::fs::create_dir_all(&tmp)?;
        if owner {
            for entry in std::fs::read_dir(&tmp)?.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&dir)?.flatten() {
            let id = entry
                .file_name()
                .to_str()
                .and_then(|n| ObjectId::from_hex(n.as_bytes()).ok());
            match (id, entry.metadata()) {
                (Some(id), Ok(meta)) if meta.is_file() => {
                    let used = meta.accessed().or_else(|_| meta.modified()).ok();
                    found.push((used, id, meta.len()));
                }
                _ => {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        found.sort();
        let files = ValueFiles {
            dir,
            tmp,
            budget,
            lru: Mutex::new(Lru::default()),
        };
        {
            let mut lru = files.lock();
            for (_, id, len) in found {
                lru.insert(id, len);
            }
        }
        files.evict();
        Ok(files)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.lru.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn path(&self, id: ObjectId) -> PathBuf {
        self.dir.join(id.to_string())
    }

    /// A new spill file for an open handle (removed when dropped, unless adopted).
    pub fn spill_file(&self) -> std::io::Result<NamedTempFile> {
        NamedTempFile::new_in(&self.tmp)
    }

    /// The plain copy of blob `id`, if present and `size()` bytes long, the blob's size
    /// (asked only when a copy is there). Copies are written without an fsync, so one cut
    /// short by a crash is dropped here rather than served as the value.
    pub fn get(&self, id: ObjectId, size: impl FnOnce() -> Option<u64>) -> Option<(File, u64)> {
        if !self.lock().touch(id) {
            return None;
        }
        match File::open(self.path(id)).and_then(|f| Ok((f.metadata()?.len(), f))) {
            Ok((len, file)) if size() == Some(len) => Some((file, len)),
            Ok(_) => {
                log::warn!("plain copy of blob {id} has the wrong size: dropping it");
                self.lock().remove(id);
                let _ = std::fs::remove_file(self.path(id));
                None
            }
            Err(_) => {
                // Deleted from outside: forget it.
                self.lock().remove(id);
                None
            }
        }
    }

    /// Takes `spill`, which holds exactly the bytes of blob `id`, as its copy. On refusal
    /// (larger than the budget) or failure the spill file is handed back, still holding the
    /// value.
    pub fn adopt(
        &self,
        id: ObjectId,
        spill: NamedTempFile,
    ) -> Result<(File, u64), (std::io::Error, NamedTempFile)> {
        let len = match spill.as_file().metadata() {
            Ok(m) => m.len(),
            Err(e) => return Err((e, spill)),
        };
        if len > self.budget {
            return Err((too_large(), spill));
        }
        let file = spill
            .persist(self.path(id))
            .map_err(|e| (e.error, e.file))?;
        self.lock().insert(id, len);
        self.evict();
        Ok((file, len))
    }

    /// Writes `bytes`, the contents of blob `id`, as its copy (nothing is written for a value
    /// the budget cannot hold).
    pub fn store(&self, id: ObjectId, bytes: &[u8]) -> std::io::Result<(File, u64)> {
        if bytes.len() as u64 > self.budget {
            return Err(too_large());
        }
        let mut spill = self.spill_file()?;
        spill.as_file_mut().write_all(bytes)?;
        // The descriptor stays open for writing too; nothing writes to an adopted file.
        self.adopt(id, spill).map_err(|(e, _)| e)
    }

    /// Writes the copy of blob `id` with `write`, which returns the bytes it wrote (the
    /// value straight from the object database, never whole in memory).
    pub fn fill<E: From<std::io::Error>>(
        &self,
        id: ObjectId,
        write: impl FnOnce(&mut File) -> Result<u64, E>,
    ) -> Result<(File, u64), E> {
        let mut spill = self.spill_file()?;
        write(spill.as_file_mut())?;
        Ok(self.adopt(id, spill).map_err(|(e, _)| e)?)
    }

    /// The bound on the directory's size: no value larger is copied here.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    fn evict(&self) {
        let drop = self.lock().over(self.budget);
        for id in drop {
            let _ = std::fs::remove_file(self.path(id));
        }
    }

    /// Bytes held, for `status`.
    pub fn size(&self) -> u64 {
        self.lock().total
    }
}

fn too_large() -> std::io::Error {
    std::io::Error::other("value larger than the value-file budget")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    fn id(n: u8) -> ObjectId {
        ObjectId::from_hex(format!("{n:02x}{}", "0".repeat(38)).as_bytes()).expect("hex")
    }

    #[test]
    fn stores_adopts_and_evicts_least_recently_used() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = ValueFiles::open(dir.path(), 10, true).expect("open");
        files.store(id(1), b"aaaa").expect("store");
        files.store(id(2), b"bbbb").expect("store");
        // Using 1 makes 2 the oldest.
        let (f, len) = files.get(id(1), || Some(4)).expect("present");
        assert_eq!(len, 4);
        let mut buf = [0u8; 4];
        f.read_exact_at(&mut buf, 0).expect("read");
        assert_eq!(&buf, b"aaaa");
        let mut spill = files.spill_file().expect("spill");
        spill.write_all(b"cccc").expect("write");
        files.adopt(id(3), spill).expect("adopt");
        assert!(files.get(id(2), || Some(4)).is_none());
        assert!(files.get(id(1), || Some(4)).is_some() && files.get(id(3), || Some(4)).is_some());
        assert_eq!(files.size(), 8);
        assert!(
            files.store(id(4), &[0u8; 11]).is_err(),
            "larger than the budget"
        );
        // A refused spill comes back whole.
        let mut big = files.spill_file().expect("spill");
        big.write_all(&[7u8; 11]).expect("write");
        let (_, back) = files.adopt(id(4), big).expect_err("over budget");
        assert_eq!(back.as_file().metadata().expect("len").len(), 11);
        // A copy whose length is not the blob's (cut short by a crash) is dropped.
        assert!(files.get(id(3), || Some(5)).is_none());
        assert!(!dir.path().join("values").join(id(3).to_string()).exists());
        files.store(id(3), b"cccc").expect("store again");
        // Reopening finds what is there and drops stray spill files.
        let stray = files.spill_file().expect("spill").keep().expect("keep").1;
        drop(files);
        let reader = ValueFiles::open(dir.path(), 10, false).expect("read-only");
        assert_eq!(reader.size(), 8);
        assert!(
            stray.exists(),
            "a read-only opener leaves the writer's spill files alone"
        );
        let files = ValueFiles::open(dir.path(), 10, true).expect("reopen");
        assert_eq!(files.size(), 8);
        assert!(!stray.exists());
    }
}
