//! Writing objects: single blobs, many blobs as one pack, streamed large blobs, and the
//! bookkeeping every write goes through (its file is noted for the next sync).
//!
//! Apart from reads because writing is where the cost of many small values is paid: a pack
//! instead of a file per object, stored zlib blocks for small ones, and a streamed writer
//! whose memory stays flat whatever the size.

use std::path::PathBuf;

use super::{BoxError, ObjectId, Result, Store, StoreError, boxed};

/// Blobs shorter than this go into packs as zlib *stored* blocks: deflating a 20-byte config
/// value saves nothing, and setting up a deflate stream per object cost 15 µs (100,000 small
/// blobs took 1.5 s to compress; stored, 0.1 s). git reads stored blocks like any other.
const STORE_BELOW: usize = 512;

/// How many times a loose write whose object directory vanished is made (see
/// [`Store::write_loose`]).
const LOOSE_WRITE_TRIES: usize = 5;

/// `data` as a zlib stream of stored (uncompressed) deflate blocks (RFC 1950/1951).
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 11 + data.len() / 65_535 * 5);
    // CMF: deflate, 32K window; FLG: fastest, with FCHECK making the pair a multiple of 31.
    out.extend_from_slice(&[0x78, 0x01]);
    let mut chunks = data.chunks(65_535).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[0x01, 0x00, 0x00, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        out.push(u8::from(last));
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&adler2::adler32_slice(data).to_be_bytes());
    out
}

impl Store {
    /// Writes a blob (a no-op if it exists) and returns its id.
    pub fn write_blob(&self, data: &[u8]) -> Result<ObjectId> {
        let id = self.write_loose("blob", |repo| repo.write_blob(data).map(|id| id.detach()))?;
        self.caches.sizes.insert(id, data.len() as u64);
        Ok(id)
    }

    /// The id a blob with `data` has, without writing it.
    pub fn hash_blob(&self, data: &[u8]) -> Result<ObjectId> {
        gix::objs::compute_hash(self.object_hash(), gix::object::Kind::Blob, data).map_err(|e| {
            StoreError::Write {
                what: "blob hash",
                source: boxed(e),
            }
        })
    }

    pub(super) fn object_hash(&self) -> gix::hash::Kind {
        self.empty_tree.kind()
    }

    /// Writes many blobs at once as one pack (with its index) in `objects/pack`, instead of one
    /// loose file each: one file pair for any number of objects. Returns how many were written.
    pub fn write_blobs_packed<'a>(
        &self,
        blobs: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<usize> {
        use gix_pack::data::output;
        let hash = self.object_hash();
        let pack_err = |e: BoxError| StoreError::Write {
            what: "pack",
            source: e,
        };
        let mut seen = std::collections::HashSet::new();
        let mut entries = Vec::new();
        let mut deflater = flate2::Compress::new(flate2::Compression::fast(), true);
        let t0 = std::time::Instant::now();
        for data in blobs {
            let id = self.hash_blob(data)?;
            // No existence check per object: each miss makes gix rescan the pack directory,
            // which for 100,000 new blobs costs more than writing them. An object that is
            // already stored elsewhere is harmless in a new pack.
            if !seen.insert(id) {
                continue;
            }
            let compressed = if data.len() < STORE_BELOW {
                zlib_stored(data)
            } else {
                // One compressor, reset per object, instead of gix-pack's `Entry::from_data`,
                // which sets up a new deflate state (hundreds of KB) for each.
                deflater.reset();
                let mut out = Vec::with_capacity(data.len() / 2 + 64);
                loop {
                    let done = deflater.total_in() as usize;
                    let status = deflater
                        .compress_vec(&data[done..], &mut out, flate2::FlushCompress::Finish)
                        .map_err(|e| pack_err(boxed(e)))?;
                    if status == flate2::Status::StreamEnd {
                        break;
                    }
                    out.reserve(out.capacity().max(64));
                }
                out
            };
            entries.push(output::Entry {
                id,
                kind: output::entry::Kind::Base(gix::object::Kind::Blob),
                decompressed_size: data.len(),
                compressed_data: compressed,
            });
            self.caches.sizes.insert(id, data.len() as u64);
        }
        let n = entries.len();
        if n == 0 {
            return Ok(0);
        }
        crate::fault::check("pack").map_err(|e| pack_err(boxed(e)))?;
        let t1 = std::time::Instant::now();
        let mut pack = Vec::new();
        for step in output::bytes::FromEntriesIter::new(
            std::iter::once(Ok(entries)),
            &mut pack,
            n as u32,
            gix_pack::data::Version::V2,
            hash,
        ) {
            step.map_err(|e| pack_err(boxed(e)))?;
        }
        let pack_dir = self.git_dir.join("objects").join("pack");
        std::fs::create_dir_all(&pack_dir).map_err(|source| StoreError::Io {
            path: pack_dir.clone(),
            source,
        })?;
        let outcome = gix_pack::Bundle::write_to_directory(
            &mut &pack[..],
            Some(&pack_dir),
            &mut gix::progress::Discard,
            &std::sync::atomic::AtomicBool::new(false),
            None::<gix::objs::find::Never>,
            hash,
            gix_pack::bundle::write::Options {
                thread_limit: Some(1),
                ..Default::default()
            },
        )
        .map_err(|e| pack_err(boxed(e)))?;
        log::debug!(
            "packed {n} blobs: compressed in {:?}, pack and index written in {:?}",
            t1 - t0,
            t1.elapsed()
        );
        self.note_written(outcome.data_path.into_iter().chain(outcome.index_path));
        if let Some(keep) = outcome.keep_path {
            self.keeps
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(keep);
        }
        Ok(n)
    }

    /// Writes a blob of exactly `size` bytes from `reader`, hashing and compressing as it
    /// reads: memory stays flat whatever the size (gix's own `write_blob_stream` reads the
    /// whole value into a buffer first, and keeps that buffer for reuse).
    pub fn write_blob_stream(&self, size: u64, reader: impl std::io::Read) -> Result<ObjectId> {
        use gix::objs::Write as _;
        // The header promises `size` bytes: a reader that ends early must fail the write
        // rather than leave a malformed object.
        let mut reader = Exact {
            inner: reader,
            left: size,
        };
        let id = self.write_loose_once("blob", |repo| {
            repo.objects
                .write_stream(gix::object::Kind::Blob, size, &mut reader)
        })?;
        self.caches.sizes.insert(id, size);
        Ok(id)
    }
    /// Notes files this store wrote, for [`Store::sync_written`].
    /// Runs one object write with a pooled repository and records its loose file for the next
    /// sync: every write goes through here (or through [`Self::write_loose_once`]).
    ///
    /// A write whose object directory vanished is made again, up to `LOOSE_WRITE_TRIES`
    /// times: gix creates `objects/xx/` and then renames its temp file into it, and stock
    /// git's `prune-packed` (run by every `git gc`) removes empty object directories, so a
    /// directory can go in between. The rename then fails with ENOENT, which reached an
    /// application as EIO at close (found with `git gc` in a loop beside `gitdb set`). git
    /// itself retries such a write the same way.
    pub(super) fn write_loose<E>(
        &self,
        what: &'static str,
        mut write: impl FnMut(&gix::Repository) -> std::result::Result<ObjectId, E>,
    ) -> Result<ObjectId>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let mut tries = 1;
        loop {
            match self.write_loose_once(what, &mut write) {
                Err(e)
                    if tries < LOOSE_WRITE_TRIES
                        && e.io_error().map(|io| io.kind())
                            == Some(std::io::ErrorKind::NotFound) =>
                {
                    tries += 1
                }
                done => return done,
            }
        }
    }

    /// [`Self::write_loose`] once, for a write that cannot be made again (a stream it has
    /// read from).
    pub(super) fn write_loose_once<E>(
        &self,
        what: &'static str,
        write: impl FnOnce(&gix::Repository) -> std::result::Result<ObjectId, E>,
    ) -> Result<ObjectId>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        crate::fault::check(what).map_err(|e| StoreError::Write {
            what,
            source: boxed(e),
        })?;
        let id = self.with_repo(write).map_err(|e| StoreError::Write {
            what,
            source: boxed(e),
        })?;
        self.note_written([self.loose_path(id)]);
        Ok(id)
    }

    pub(super) fn note_written(&self, files: impl IntoIterator<Item = PathBuf>) {
        self.unsynced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(files);
    }
}

/// A reader of exactly `left` more bytes: an early end is an error, extra bytes are not read.
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: std::io::Read> std::io::Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("value ended {} bytes early", self.left),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_blobs_match_written_ones_and_short_streams_fail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            Store::open_or_create(&dir.path().join("r.git"), Default::default()).expect("store");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let streamed = store
            .write_blob_stream(data.len() as u64, &data[..])
            .expect("stream");
        assert_eq!(streamed, store.hash_blob(&data).expect("hash"));
        assert_eq!(&store.blob(streamed).expect("read")[..], &data[..]);
        // A reader that ends before the promised size writes nothing: no loose object is
        // left behind, whatever id a short write would have had.
        let loose = || walkdir_count(&dir.path().join("r.git").join("objects"));
        let before = loose();
        let short = store.write_blob_stream(data.len() as u64 + 1, &data[..]);
        assert!(short.is_err());
        assert_eq!(loose(), before);
    }

    /// Stock git's `prune-packed` beside the node: loose objects deleted and their emptied
    /// directories removed, over and over, while blobs are written. Each write succeeds
    /// (a directory removed between gix's mkdir and its rename used to fail the write).
    #[test]
    fn loose_writes_survive_object_directories_removed_beside_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            Store::open_or_create(&dir.path().join("r.git"), Default::default()).expect("store");
        let objects = dir.path().join("r.git").join("objects");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let pruner = {
            let (objects, stop) = (objects.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for entry in std::fs::read_dir(&objects).into_iter().flatten().flatten() {
                        let name = entry.file_name();
                        if name.len() != 2 {
                            continue;
                        }
                        for f in std::fs::read_dir(entry.path())
                            .into_iter()
                            .flatten()
                            .flatten()
                        {
                            let _ = std::fs::remove_file(f.path());
                        }
                        let _ = std::fs::remove_dir(entry.path());
                    }
                }
            })
        };
        let mut failed = Vec::new();
        for i in 0..3000u32 {
            if let Err(e) = store.write_blob(format!("value {i}").as_bytes()) {
                failed.push(e.to_string());
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        pruner.join().expect("pruner");
        assert!(
            failed.is_empty(),
            "{} failed, e.g. {:?}",
            failed.len(),
            failed.first()
        );
    }

    /// Files below `dir`, at any depth.
    fn walkdir_count(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| {
                        let path = e.path();
                        if path.is_dir() {
                            walkdir_count(&path)
                        } else {
                            1
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod zlib_tests {
    use super::zlib_stored;
    use std::io::Read;

    #[test]
    fn stored_zlib_streams_inflate_to_their_data() {
        for len in [0usize, 1, 20, 511, 65_535, 65_536, 200_000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let z = zlib_stored(&data);
            let mut back = Vec::new();
            flate2::read::ZlibDecoder::new(&z[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "length {len}");
        }
    }
}
