//! A received blob written piece by piece as its parts arrive, so that a large value a peer
//! sends costs a buffer of memory instead of its size, and nothing of it is kept unless it
//! came whole.
//!
//! Apart from `write.rs`'s streamed writer because that one pulls from a reader on one call,
//! while a peer's parts come in separate messages between which the connection is polled: this
//! writer is pushed to, one part at a time. The bytes go through zlib into a temp file in
//! `objects/` (the name the `tempfile` crate gives, which housekeeping removes if the process
//! was killed mid-blob) while the object id is hashed; only once exactly the claimed size came
//! does the file become the loose object. Dropped before that (a cut connection, a refused
//! part, a full disk), the temp file is removed at once.

use std::io::Write;

use super::{ObjectId, Result, Store, StoreError, boxed};

/// A blob of a known size being written from its parts (see the module docs).
pub struct BlobWriter<'a> {
    store: &'a Store,
    zlib: flate2::write::ZlibEncoder<tempfile::NamedTempFile>,
    hasher: gix::hash::Hasher,
    size: u64,
    written: u64,
}

fn write_err(e: impl Into<super::BoxError>) -> StoreError {
    StoreError::Write {
        what: "streamed blob",
        source: boxed(e),
    }
}

impl Store {
    /// Starts a blob of exactly `size` bytes: refused at once if the disk has no room for it
    /// (see `room.rs`), whatever the parts will bring.
    pub fn blob_writer(&self, size: u64) -> Result<BlobWriter<'_>> {
        self.check_room(|| format!("a blob of {size} bytes"), size)?;
        crate::fault::check("blob").map_err(write_err)?;
        let objects = self.git_dir.join("objects");
        let file = tempfile::NamedTempFile::new_in(&objects).map_err(|source| StoreError::Io {
            path: objects.clone(),
            source,
        })?;
        let mut hasher = gix::hash::hasher(self.object_hash());
        let header = gix::objs::encode::loose_header(gix::object::Kind::Blob, size);
        hasher.update(&header);
        let mut zlib = flate2::write::ZlibEncoder::new(file, flate2::Compression::fast());
        zlib.write_all(&header).map_err(|source| StoreError::Io {
            path: objects,
            source,
        })?;
        Ok(BlobWriter {
            store: self,
            zlib,
            hasher,
            size,
            written: 0,
        })
    }
}

impl BlobWriter<'_> {
    /// Appends `data`; refused if it would pass the claimed size, or leave the disk less than
    /// its reserve (the room is asked again per part: other writers share the disk).
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        let len = data.len() as u64;
        if len > self.size - self.written {
            return Err(StoreError::Refused {
                what: format!("a blob of {} bytes", self.size),
                reason: format!("its parts bring {} bytes or more", self.written + len),
            });
        }
        self.store
            .check_room(|| format!("a part of a blob of {} bytes", self.size), len)?;
        crate::fault::check("blob").map_err(write_err)?;
        self.hasher.update(data);
        self.zlib.write_all(data).map_err(|source| StoreError::Io {
            path: self.zlib.get_ref().path().to_owned(),
            source,
        })?;
        self.written += len;
        Ok(())
    }

    /// Bytes still to come.
    pub fn left(&self) -> u64 {
        self.size - self.written
    }

    /// Stores the blob once all of it came, and returns its id; a blob cut short is refused
    /// (and its temp file removed).
    pub fn finish(self) -> Result<ObjectId> {
        if self.written != self.size {
            return Err(StoreError::Refused {
                what: format!("a blob of {} bytes", self.size),
                reason: format!("it ended after {} bytes", self.written),
            });
        }
        let id = self.hasher.try_finalize().map_err(write_err)?;
        let file = self.zlib.finish().map_err(write_err)?;
        let path = self.store.loose_path(id);
        if let Some(dir) = path.parent() {
            match std::fs::create_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(source) => {
                    return Err(StoreError::Io {
                        path: dir.to_owned(),
                        source,
                    });
                }
            }
        }
        // Loose objects are read-only, as git and gix write them.
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = file
                .as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o444));
        }
        file.persist(&path).map_err(|e| StoreError::Io {
            path: path.clone(),
            source: e.error,
        })?;
        self.store.note_written([path]);
        self.store.caches.sizes.insert(id, self.size);
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open_or_create(&dir.path().join("r.git"), Default::default()).unwrap();
        (dir, s)
    }

    /// Files in `objects/` that are neither a fan-out directory nor a pack directory: what a
    /// cut blob would leave.
    fn temp_files(s: &Store) -> Vec<std::path::PathBuf> {
        std::fs::read_dir(s.git_dir.join("objects"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.path())
            .collect()
    }

    #[test]
    fn a_blob_from_parts_is_the_blob_git_would_write() {
        let (_d, s) = store();
        let data: Vec<u8> = (0..3_000_000u64).map(|i| (i * 7919 % 251) as u8).collect();
        let mut w = s.blob_writer(data.len() as u64).unwrap();
        for part in data.chunks(1 << 20) {
            w.write(part).unwrap();
        }
        assert_eq!(w.left(), 0);
        let id = w.finish().unwrap();
        assert_eq!(id, s.hash_blob(&data).unwrap());
        assert_eq!(&*s.blob(id).unwrap(), &data[..]);
        assert!(temp_files(&s).is_empty());
        let out = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(&s.git_dir)
            .args(["cat-file", "-s", &id.to_string()])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3000000");
    }

    #[test]
    fn a_cut_or_overlong_blob_leaves_nothing() {
        let (_d, s) = store();
        // Cut: dropped (the connection ended) or finished early.
        let mut w = s.blob_writer(10).unwrap();
        w.write(b"12345").unwrap();
        assert_eq!(temp_files(&s).len(), 1, "the temp file while it is written");
        drop(w);
        assert!(temp_files(&s).is_empty());
        let mut w = s.blob_writer(10).unwrap();
        w.write(b"12345").unwrap();
        assert!(w.finish().is_err());
        // Longer than claimed.
        let mut w = s.blob_writer(4).unwrap();
        assert!(matches!(w.write(b"12345"), Err(StoreError::Refused { .. })));
        drop(w);
        assert!(temp_files(&s).is_empty());
        assert!(!s.has_object(s.hash_blob(b"12345").unwrap()));
    }

    #[test]
    fn a_claim_larger_than_the_disk_is_refused_before_anything_is_written() {
        let (_d, s) = store();
        let e = s.blob_writer(1 << 60).err().unwrap();
        assert_eq!(
            e.io_error().and_then(|e| e.raw_os_error()),
            Some(libc::ENOSPC),
            "{e}"
        );
        assert!(temp_files(&s).is_empty());
    }
}
