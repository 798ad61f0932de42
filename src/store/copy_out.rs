//! Copying a blob out of the object database piece by piece, for values too large to hold.
//!
//! gix reads a loose object by mapping its file and inflating the whole object into one
//! buffer: a 1 GiB value then costs 1 GiB of heap plus 1 GiB of mapped file at once (2.16 GB
//! RSS was measured). The mount only needs such a value once, to write its plain copy (see
//! `fuse/valuefiles.rs`), so here a loose blob is inflated through a small buffer straight
//! into the writer, and checked against its id on the way: a plain copy is served from then
//! on without looking at the object again, so a corrupt object must not become one.
//!
//! A packed blob (after `git gc` or a bulk commit) is read whole through gix: pack entries
//! can be deltas, which need their base in memory anyway.

use std::fs::File;
use std::io::{BufReader, Write};

use crate::store::{ObjectId, Result, Store, StoreError, boxed};

/// Inflated bytes per step: big enough that the per-call cost vanishes, small enough to sit
/// in the CPU cache next to its output.
const CHUNK: usize = 256 << 10;

/// The longest loose header, `blob <20 digits>\0`.
const HEADER_MAX: usize = 32;

impl Store {
    /// Writes the contents of blob `id` to `out` and returns its size. Memory stays at one
    /// buffer for a loose blob whatever its size; a packed one is read whole.
    pub fn copy_blob(&self, id: ObjectId, out: &mut impl Write) -> Result<u64> {
        match File::open(self.loose_path(id)) {
            Ok(file) => self.copy_loose(id, file, out),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let data = self.blob(id)?;
                out.write_all(&data).map_err(|e| copy_out_err(id, e))?;
                Ok(data.len() as u64)
            }
            Err(e) => Err(StoreError::Read {
                id,
                source: boxed(e),
            }),
        }
    }

    fn copy_loose(&self, id: ObjectId, file: File, out: &mut impl Write) -> Result<u64> {
        let corrupt = |what: &str| StoreError::Read {
            id,
            source: boxed(format!("loose object: {what}")),
        };
        let read_err = |e: std::io::Error| StoreError::Read {
            id,
            source: boxed(e),
        };
        let mut input = BufReader::with_capacity(CHUNK, file);
        let mut state = gix::zlib::Decompress::new();
        let mut hasher = gix::hash::hasher(id.kind());
        let mut buf = vec![0u8; CHUNK];

        // The header first: inflate until its NUL, keeping whatever body came with it.
        let mut filled = 0;
        let nul = loop {
            let n = gix::zlib::stream::inflate::read(&mut input, &mut state, &mut buf[filled..])
                .map_err(read_err)?;
            if n == 0 {
                return Err(corrupt("ends inside its header"));
            }
            filled += n;
            if let Some(nul) = buf[..filled.min(HEADER_MAX)].iter().position(|&b| b == 0) {
                break nul;
            }
            if filled >= HEADER_MAX {
                return Err(corrupt("header too long"));
            }
        };
        let (kind, size, header_len) =
            gix::objs::decode::loose_header(&buf[..=nul]).map_err(|e| StoreError::Read {
                id,
                source: boxed(e),
            })?;
        if kind != gix::object::Kind::Blob {
            return Err(StoreError::WrongKind {
                id,
                expected: "blob",
            });
        }
        hasher.update(&buf[..filled]);
        let mut body = &buf[header_len..filled];
        let mut written = 0u64;
        loop {
            written += body.len() as u64;
            if written > size {
                return Err(corrupt("longer than its header says"));
            }
            out.write_all(body).map_err(|e| copy_out_err(id, e))?;
            let n = gix::zlib::stream::inflate::read(&mut input, &mut state, &mut buf)
                .map_err(read_err)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            body = &buf[..n];
        }
        if written != size {
            return Err(corrupt("shorter than its header says"));
        }
        let actual = hasher.try_finalize().map_err(|e| StoreError::Read {
            id,
            source: boxed(e),
        })?;
        if actual != id {
            return Err(corrupt(&format!("contents hash to {actual}")));
        }
        Ok(size)
    }
}

fn copy_out_err(id: ObjectId, source: std::io::Error) -> StoreError {
    StoreError::CopyOut { id, source }
}

#[cfg(test)]
mod tests {
    use crate::store::Store;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            Store::open_or_create(&dir.path().join("db.git"), Default::default()).expect("store");
        (dir, store)
    }

    #[test]
    fn copies_loose_blobs_of_every_size_exactly() {
        let (_dir, store) = store();
        for len in [
            0usize,
            1,
            31,
            32,
            33,
            1000,
            (256 << 10) - 7,
            (256 << 10) + 13,
            3 << 20,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
            let id = store.write_blob(&data).expect("write");
            let mut out = Vec::new();
            assert_eq!(store.copy_blob(id, &mut out).expect("copy"), len as u64);
            assert_eq!(out, data, "length {len}");
        }
    }

    #[test]
    fn copies_a_packed_blob_after_stock_git_repacks() {
        let (dir, store) = store();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        let id = store.write_blob(&data).expect("write");
        // Only reachable objects survive a repack: name the blob by a tag.
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .arg("--git-dir")
                .arg(dir.path().join("db.git"))
                .args(args)
                .output()
                .expect("git");
            assert!(out.status.success(), "git {args:?}: {out:?}");
        };
        git(&["tag", "held", &id.to_string()]);
        git(&["repack", "-adq"]);
        assert!(!store.loose_path(id).exists(), "the blob is packed now");
        let mut out = Vec::new();
        assert_eq!(
            store.copy_blob(id, &mut out).expect("copy"),
            data.len() as u64
        );
        assert_eq!(out, data);
    }

    #[test]
    fn refuses_a_loose_object_whose_contents_do_not_match_its_id() {
        let (_dir, store) = store();
        let good = store.write_blob(b"the right bytes").expect("write");
        let other = store.write_blob(b"other bytes here").expect("write");
        // Put `other`'s file at `good`'s name, as a bit flip or a bad copy would.
        let (good_path, other_path) = (store.loose_path(good), store.loose_path(other));
        let mut perms = std::fs::metadata(&good_path).expect("meta").permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        std::fs::set_permissions(&good_path, perms).expect("chmod");
        std::fs::copy(&other_path, &good_path).expect("copy");
        let err = store
            .copy_blob(good, &mut Vec::new())
            .expect_err("a corrupt object");
        assert!(err.to_string().contains("hash to"), "{err}");
    }

    #[test]
    fn refuses_a_tree_and_reports_a_missing_blob() {
        let (_dir, store) = store();
        let missing =
            gix::ObjectId::from_hex(b"0123456789012345678901234567890123456789").expect("hex");
        assert!(store.copy_blob(missing, &mut Vec::new()).is_err());
        store.ensure_empty_tree().expect("empty tree");
        let tree = store.empty_tree();
        let err = store.copy_blob(tree, &mut Vec::new()).expect_err("a tree");
        assert!(err.to_string().contains("not a blob"), "{err}");
    }
}
