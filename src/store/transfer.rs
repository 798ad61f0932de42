//! Object transfer: what another repository lacks, as a stream of items it can check one by one.
//!
//! gix has no upload-pack server side, and a pack of whole trees moves ~27 KB for a one-key
//! change in a store with 1,000-entry directories (measured on this project's 2-core test machine). So a transfer is a
//! sequence of [`Item`]s, parents before children, in which a commit usually travels as its
//! raw bytes plus the entries that changed against its first parent: the receiver rebuilds the
//! trees with [`Store::write_tree`] (the same code that wrote them on the sender) and checks the
//! result against the tree id the commit names. Where that rebuild would not reproduce the tree
//! (names stock git wrote that gitdb spells differently, submodules, non-canonical trees) the
//! sender finds out first, by hashing the rebuild itself, and sends the changed trees whole.
//!
//! The receiver ([`Importer`]) trusts nothing: every id is computed from the bytes it got, a
//! commit is written only once its parents and tree are present and its tree matched, a tree
//! only once every entry is present and its names are safe to check out, and the caller moves
//! a ref only after [`Importer::finish`] found the wanted commit. An aborted transfer leaves at
//! most unreferenced objects, which `git gc` prunes.

use std::collections::{HashMap, HashSet};

use super::tree::EntryKind;
use super::{ObjectId, ObjectKind, Result, Store, StoreError, TreeEdit, ValueMode, boxed};

/// One unit of a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A blob some later tree or edit names.
    Blob(Vec<u8>),
    /// A whole tree, sent after every tree and blob it names that the receiver lacks.
    Tree(Vec<u8>),
    /// A commit's raw bytes. With `edits`, the receiver rebuilds its tree from the first
    /// parent's (the empty tree for a root commit); without, the tree was sent whole.
    Commit {
        data: Vec<u8>,
        edits: Option<Vec<EntryEdit>>,
    },
}

/// One changed path of a commit against its first parent: a key path (names unescaped, as
/// [`Store::diff_trees`] shows them) and its new value, `None` when it is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryEdit {
    pub path: String,
    pub value: Option<(ValueMode, EditBlob)>,
}

/// The blob of an edit: one the receiver has (or got earlier in the transfer), or the new
/// blob's bytes inline, whose id the receiver computes (saving 20 bytes and an item per new
/// value: a one-key change then costs little more than its path and value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditBlob {
    Known(ObjectId),
    Inline(Vec<u8>),
}

/// What an export sent, so one transfer never sends an object twice.
#[derive(Debug, Default)]
pub struct Sent {
    objects: HashSet<ObjectId>,
    /// Commits sent with edits, and whole.
    pub compact: usize,
    pub whole: usize,
}

impl Store {
    /// The commits reachable from `want` and from none of the `haves` this repository has,
    /// parents before children (so each can be checked on arrival).
    pub fn commits_missing(&self, want: ObjectId, haves: &[ObjectId]) -> Result<Vec<ObjectId>> {
        let hidden: Vec<ObjectId> = haves
            .iter()
            .copied()
            .filter(|&h| self.has_object(h))
            .collect();
        if hidden.contains(&want) {
            return Ok(Vec::new());
        }
        let ids: HashSet<ObjectId> = self.with_repo(|repo| -> Result<HashSet<ObjectId>> {
            let walk = repo
                .rev_walk([want])
                .with_hidden(hidden)
                .all()
                .map_err(|e| StoreError::Read {
                    id: want,
                    source: boxed(e),
                })?;
            let mut ids = HashSet::new();
            for info in walk {
                let info = info.map_err(|e| StoreError::Read {
                    id: want,
                    source: boxed(e),
                })?;
                ids.insert(info.id);
            }
            Ok(ids)
        })?;
        // The walk's order is by commit time, which clock skew can put before a parent: order
        // by the graph instead (post-order of a depth-first walk over the selected commits).
        let mut order = Vec::with_capacity(ids.len());
        let mut done = HashSet::with_capacity(ids.len());
        let mut stack = vec![(want, false)];
        while let Some((id, expanded)) = stack.pop() {
            if expanded {
                order.push(id);
                continue;
            }
            if !ids.contains(&id) || !done.insert(id) {
                continue;
            }
            stack.push((id, true));
            let info = self.commit_info(id)?;
            for p in info.parents.iter().rev() {
                stack.push((*p, false));
            }
        }
        Ok(order)
    }

    /// Sends the items of commit `id` to `out`, for a receiver that has the closures of its
    /// parents (and whatever `sent` holds). Returns the number of bytes of objects sent.
    pub fn export_commit(
        &self,
        id: ObjectId,
        sent: &mut Sent,
        out: &mut dyn FnMut(Item) -> Result<()>,
    ) -> Result<()> {
        let info = self.commit_info(id)?;
        let base = match info.parents.first() {
            Some(&p) => self.commit_info(p)?.tree,
            None => self.empty_tree(),
        };
        let changes = self.diff_trees(base, info.tree)?;
        let plain: Vec<(String, Option<(ValueMode, ObjectId)>)> = changes
            .into_iter()
            .map(|c| {
                let value = match c.new {
                    Some((EntryKind::Value(mode), id)) => Some((mode, id)),
                    _ => None,
                };
                (c.path, value)
            })
            .collect();
        let rebuilt = self.hash_tree(base, plain.iter().map(|(p, v)| tree_edit(p, *v)))?;
        let (_, data) = self.raw_object(id)?;
        if rebuilt == info.tree {
            let mut edits = Vec::with_capacity(plain.len());
            for (path, value) in plain {
                let value = match value {
                    Some((mode, blob)) if sent.objects.insert(blob) => {
                        let data = self.raw_object(blob)?.1;
                        if data.len() > INLINE_MAX {
                            // Large values travel as items of their own, which the wire can
                            // split; an edit then names them.
                            out(Item::Blob(data))?;
                            Some((mode, EditBlob::Known(blob)))
                        } else {
                            Some((mode, EditBlob::Inline(data)))
                        }
                    }
                    Some((mode, blob)) => Some((mode, EditBlob::Known(blob))),
                    None => None,
                };
                edits.push(EntryEdit { path, value });
            }
            sent.compact += 1;
            out(Item::Commit {
                data,
                edits: Some(edits),
            })?;
        } else {
            log::debug!("{id}: its tree does not rebuild from edits; sending trees whole");
            self.export_tree(info.tree, Some(base), sent, out)?;
            sent.whole += 1;
            out(Item::Commit { data, edits: None })?;
        }
        sent.objects.insert(id);
        Ok(())
    }

    /// Sends tree `id` and what it names that differs from `old` (the tree at the same path on
    /// the receiver's side), children first.
    fn export_tree(
        &self,
        id: ObjectId,
        old: Option<ObjectId>,
        sent: &mut Sent,
        out: &mut dyn FnMut(Item) -> Result<()>,
    ) -> Result<()> {
        if old == Some(id) || sent.objects.contains(&id) {
            return Ok(());
        }
        if id == self.empty_tree() {
            sent.objects.insert(id);
            return out(Item::Tree(Vec::new()));
        }
        let (_, data) = self.raw_object(id)?;
        let old_entries: HashMap<Vec<u8>, (gix::objs::tree::EntryMode, ObjectId)> = match old {
            Some(o) => raw_entries(&self.raw_object(o)?.1, o)?,
            None => HashMap::new(),
        };
        let tree = gix::objs::TreeRef::from_bytes(&data, self.object_hash()).map_err(|e| {
            StoreError::Read {
                id,
                source: boxed(e),
            }
        })?;
        for e in &tree.entries {
            let before = old_entries.get(e.filename.as_ref() as &[u8]);
            let child = e.oid.to_owned();
            if before.is_some_and(|(_, o)| *o == child) {
                continue;
            }
            if e.mode.is_tree() {
                let old_sub = before.filter(|(m, _)| m.is_tree()).map(|(_, o)| *o);
                self.export_tree(child, old_sub, sent, out)?;
            } else if (e.mode.is_blob() || e.mode.is_link()) && sent.objects.insert(child) {
                out(Item::Blob(self.raw_object(child)?.1))?;
            }
            // A gitlink names a commit of another repository: nothing to send.
        }
        sent.objects.insert(id);
        out(Item::Tree(data.clone()))
    }
}

fn raw_entries(
    data: &[u8],
    id: ObjectId,
) -> Result<HashMap<Vec<u8>, (gix::objs::tree::EntryMode, ObjectId)>> {
    let tree = gix::objs::TreeRef::from_bytes(data, gix::hash::Kind::Sha1).map_err(|e| {
        StoreError::Read {
            id,
            source: boxed(e),
        }
    })?;
    Ok(tree
        .entries
        .iter()
        .map(|e| (e.filename.to_vec(), (e.mode, e.oid.to_owned())))
        .collect())
}

fn tree_edit(path: &str, value: Option<(ValueMode, ObjectId)>) -> TreeEdit<'_> {
    match value {
        Some((mode, id)) => TreeEdit::Upsert { path, mode, id },
        None => TreeEdit::Remove { path },
    }
}

/// The largest blob sent inside its edit.
pub const INLINE_MAX: usize = 1 << 20;

/// The root name the mount's control directory takes: never a key, so never in a root tree.
const RESERVED: &str = ".gitdb";

/// How many blobs are buffered before they are written as one pack instead of loose files.
const PACK_AT: usize = 64;

/// Most bytes of blobs buffered before they are written, whatever their number: a peer's
/// batches of large distinct blobs must not pile up in memory (1,024 blobs of 64 MiB each
/// were 64 GiB before this bound).
const BUFFER_BYTES: usize = 32 << 20;

/// Trees and commits are small: the disk's room is asked once per this many bytes of them
/// (a peer's endless stream of distinct trees still stops at the reserve).
const ROOM_EVERY: u64 = 1 << 20;

/// Receives the items of a transfer into a store, checking each (see the module docs).
pub struct Importer<'a> {
    store: &'a Store,
    /// Objects written by this transfer: present without asking the object database.
    received: HashSet<ObjectId>,
    /// Blobs not yet written, with their ids.
    blobs: Vec<(ObjectId, Vec<u8>)>,
    /// Bytes the buffered blobs hold.
    buffered: usize,
    /// Bytes of trees and commits written since the disk's room was last asked.
    unchecked: u64,
    /// A large blob arriving in parts (see [`Importer::begin_blob`]).
    stream: Option<super::blob_stream::BlobWriter<'a>>,
    /// The kinds of the trees and blobs this transfer wrote (checked against tree entry modes).
    kinds: HashMap<ObjectId, ObjectKind>,
    pub commits: usize,
    pub objects: usize,
}

fn refused(what: impl Into<String>, reason: impl Into<String>) -> StoreError {
    StoreError::Refused {
        what: what.into(),
        reason: reason.into(),
    }
}

impl<'a> Importer<'a> {
    pub fn new(store: &'a Store) -> Importer<'a> {
        Importer {
            store,
            received: HashSet::new(),
            blobs: Vec::new(),
            buffered: 0,
            unchecked: 0,
            stream: None,
            kinds: HashMap::new(),
            commits: 0,
            objects: 0,
        }
    }

    fn present(&self, id: ObjectId) -> bool {
        self.received.contains(&id) || self.store.has_object(id)
    }

    /// A `.gitmodules` or `.gitattributes` entry holds what `git fsck` accepts there (see
    /// [`super::checked_files`]); its blob must have been sent or be present.
    fn check_checked_file(
        &self,
        file: super::names::CheckedFile,
        mode: &gix::objs::tree::EntryMode,
        id: ObjectId,
    ) -> std::result::Result<(), String> {
        use super::checked_files::{check_contents, check_kind};
        check_kind(file, mode.is_tree(), mode.is_link(), mode.is_commit())?;
        if mode.is_link() {
            return Ok(());
        }
        let buffered = self.blobs.iter().find(|(b, _)| *b == id).map(|(_, d)| d);
        let size = match buffered {
            Some(d) => d.len() as u64,
            None => self.store.blob_size(id).map_err(|e| e.to_string())?,
        };
        check_contents(file, size, || match buffered {
            Some(d) => Ok(d.clone()),
            None => self
                .store
                .blob(id)
                .map(|b| b.to_vec())
                .map_err(|e| e.to_string()),
        })
    }

    /// The kind of a present object (its header only: a large blob is not read).
    fn kind_of(&self, id: ObjectId) -> Result<ObjectKind> {
        if let Some(&kind) = self.kinds.get(&id) {
            return Ok(kind);
        }
        if self.blobs.iter().any(|(b, _)| *b == id) {
            return Ok(ObjectKind::Blob);
        }
        self.store.with_repo(|repo| {
            repo.find_header(id)
                .map(|h| h.kind())
                .map_err(|e| StoreError::Read {
                    id,
                    source: boxed(e),
                })
        })
    }

    /// The name checks a received tree's entries and an edit's path pass, for the fuzz targets.
    #[doc(hidden)]
    pub fn entry_name_ok(name: &[u8]) -> std::result::Result<(), String> {
        check_entry_name(name)
    }

    #[doc(hidden)]
    pub fn edit_path_ok(path: &str) -> std::result::Result<(), String> {
        check_edit_path(path)
    }

    pub fn add(&mut self, item: Item) -> Result<()> {
        if self.stream.is_some() {
            return Err(refused(
                "an item",
                "it came inside the parts of a blob still under way",
            ));
        }
        match item {
            Item::Blob(data) => {
                self.buffer_blob(data)?;
                Ok(())
            }
            Item::Tree(data) => {
                self.write_blobs()?;
                self.add_tree(&data)
            }
            Item::Commit { data, edits } => {
                self.write_blobs()?;
                self.add_commit(&data, edits)
            }
        }
    }

    /// Starts a blob of `size` bytes that arrives in parts ([`Importer::blob_part`]), written
    /// to disk as they come (see `blob_stream.rs`): refused at once if the disk has no room
    /// for `size` bytes. Until [`Importer::end_blob`], no other item is taken.
    pub fn begin_blob(&mut self, size: u64) -> Result<()> {
        if self.stream.is_some() {
            return Err(refused(
                format!("a blob of {size} bytes"),
                "another blob is still under way",
            ));
        }
        self.write_blobs()?;
        self.stream = Some(self.store.blob_writer(size)?);
        Ok(())
    }

    /// The next part of the blob under way.
    pub fn blob_part(&mut self, data: &[u8]) -> Result<()> {
        let Some(w) = self.stream.as_mut() else {
            return Err(refused("a blob part", "no blob is under way"));
        };
        let r = w.write(data);
        if r.is_err() {
            // Dropping the writer removes what it wrote.
            self.stream = None;
        }
        r
    }

    /// Ends the blob under way: it must have come whole. Returns its id.
    pub fn end_blob(&mut self) -> Result<ObjectId> {
        let Some(w) = self.stream.take() else {
            return Err(refused("the end of a blob", "no blob is under way"));
        };
        let id = w.finish()?;
        if self.received.insert(id) {
            self.objects += 1;
        }
        self.kinds.insert(id, ObjectKind::Blob);
        Ok(id)
    }

    /// Takes a whole blob into the buffer, writing the buffer out once it holds many blobs or
    /// many bytes.
    fn buffer_blob(&mut self, data: Vec<u8>) -> Result<ObjectId> {
        let id = self.store.hash_blob(&data)?;
        if self.received.insert(id) {
            self.buffered += data.len();
            self.blobs.push((id, data));
            self.objects += 1;
        }
        if self.blobs.len() >= PACK_AT * 16 || self.buffered >= BUFFER_BYTES {
            self.write_blobs()?;
        }
        Ok(id)
    }

    /// Asks the disk for room for `bytes` of trees or commits, once per [`ROOM_EVERY`].
    fn room_for(&mut self, what: &str, bytes: usize) -> Result<()> {
        self.unchecked += bytes as u64;
        if self.unchecked >= ROOM_EVERY {
            let n = std::mem::take(&mut self.unchecked);
            self.store
                .check_room(|| format!("{what} and those before it"), n)?;
        }
        Ok(())
    }

    fn write_blobs(&mut self) -> Result<()> {
        if self.blobs.is_empty() {
            return Ok(());
        }
        let bytes = std::mem::take(&mut self.buffered) as u64;
        let n = self.blobs.len();
        if let Err(e) = self.store.check_room(|| format!("{n} blob(s)"), bytes) {
            // Nothing of them is written; the transfer fails.
            self.blobs.clear();
            return Err(e);
        }
        let blobs = std::mem::take(&mut self.blobs);
        self.kinds
            .extend(blobs.iter().map(|(id, _)| (*id, ObjectKind::Blob)));
        if blobs.len() >= PACK_AT {
            self.store
                .write_blobs_packed(blobs.iter().map(|(_, d)| d.as_slice()))?;
        } else {
            for (id, data) in &blobs {
                let got = self.store.write_raw(ObjectKind::Blob, data)?;
                debug_assert_eq!(got, *id);
            }
        }
        Ok(())
    }

    fn add_tree(&mut self, data: &[u8]) -> Result<()> {
        let id = gix::objs::compute_hash(gix::hash::Kind::Sha1, ObjectKind::Tree, data)
            .map_err(|e| refused("a tree", e.to_string()))?;
        if data.is_empty() {
            self.store.ensure_empty_tree()?;
            self.received.insert(id);
            self.kinds.insert(id, ObjectKind::Tree);
            return Ok(());
        }
        let tree = gix::objs::TreeRef::from_bytes(data, gix::hash::Kind::Sha1)
            .map_err(|e| refused(format!("tree {id}"), format!("malformed: {e}")))?;
        for e in &tree.entries {
            check_entry_name(e.filename.as_ref()).map_err(|r| refused(format!("tree {id}"), r))?;
            let child = e.oid.to_owned();
            if let Some(file) = std::str::from_utf8(e.filename.as_ref())
                .ok()
                .and_then(super::names::checked_file)
            {
                self.check_checked_file(file, &e.mode, child)
                    .map_err(|r| refused(format!("tree {id}"), r))?;
            }
            if e.mode.is_commit() {
                continue;
            }
            if !self.present(child) {
                return Err(refused(
                    format!("tree {id}"),
                    format!("it names {child}, which was not sent"),
                ));
            }
            // A directory entry naming a blob (or a value naming a tree) would make every
            // read below it fail: refused here, before any ref can name it.
            let kind = self.kind_of(child)?;
            let expected = if e.mode.is_tree() {
                ObjectKind::Tree
            } else {
                ObjectKind::Blob
            };
            if kind != expected {
                return Err(refused(
                    format!("tree {id}"),
                    format!(
                        "its entry {:?} is a {expected:?} by its mode, but names a {kind:?}",
                        String::from_utf8_lossy(e.filename.as_ref())
                    ),
                ));
            }
        }
        // A tree git would not write (entries out of order or twice, odd or zero-padded
        // modes) hashes to what the commit names all the same, but `git fsck --strict` and a
        // `git clone` with fsck refuse the repository that holds it.
        check_canonical(&tree).map_err(|r| refused(format!("tree {id}"), r))?;
        self.room_for("a tree", data.len())?;
        let got = self.store.write_raw(ObjectKind::Tree, data)?;
        self.received.insert(got);
        self.kinds.insert(got, ObjectKind::Tree);
        self.objects += 1;
        Ok(())
    }

    fn add_commit(&mut self, data: &[u8], edits: Option<Vec<EntryEdit>>) -> Result<()> {
        let id = gix::objs::compute_hash(gix::hash::Kind::Sha1, ObjectKind::Commit, data)
            .map_err(|e| refused("a commit", e.to_string()))?;
        let what = || format!("commit {id}");
        let commit = gix::objs::CommitRef::from_bytes(data, gix::hash::Kind::Sha1)
            .map_err(|e| refused(what(), format!("malformed: {e}")))?;
        let tree = commit.tree();
        let parents: Vec<ObjectId> = commit.parents().collect();
        for p in &parents {
            if !self.present(*p) {
                return Err(refused(what(), format!("its parent {p} was not sent")));
            }
        }
        match edits {
            Some(edits) => {
                let base = match parents.first() {
                    Some(&p) => self.store.commit_info(p)?.tree,
                    None => self.store.empty_tree(),
                };
                let t0 = std::time::Instant::now();
                let mut resolved = Vec::with_capacity(edits.len());
                for e in edits {
                    check_edit_path(&e.path).map_err(|r| refused(what(), r))?;
                    let value = match e.value {
                        None => None,
                        Some((mode, EditBlob::Inline(data))) => {
                            Some((mode, self.buffer_blob(data)?))
                        }
                        Some((mode, EditBlob::Known(blob))) => {
                            if !self.present(blob) {
                                return Err(refused(
                                    what(),
                                    format!("{} names blob {blob}, which was not sent", e.path),
                                ));
                            }
                            // A value naming a tree or a commit would break every read of it
                            // (and fsck): the id must be a blob's.
                            let kind = self.kind_of(blob)?;
                            if kind != ObjectKind::Blob {
                                return Err(refused(
                                    what(),
                                    format!("{} names {blob}, a {kind:?}, as its value", e.path),
                                ));
                            }
                            Some((mode, blob))
                        }
                    };
                    resolved.push((e.path, value));
                }
                let t1 = std::time::Instant::now();
                self.write_blobs()?;
                let t2 = std::time::Instant::now();
                let rebuilt = self
                    .store
                    .write_tree(base, resolved.iter().map(|(p, v)| tree_edit(p, *v)))
                    .map_err(|e| refused(what(), format!("its edits do not apply: {e}")))?;
                log::debug!(
                    "commit {id}: {} edits checked in {:?}, blobs written in {:?}, trees in {:?}",
                    resolved.len(),
                    t1 - t0,
                    t2 - t1,
                    t2.elapsed()
                );
                if rebuilt != tree {
                    return Err(refused(
                        what(),
                        format!("its edits rebuild tree {rebuilt}, the commit names {tree}"),
                    ));
                }
                if rebuilt == self.store.empty_tree() {
                    self.store.ensure_empty_tree()?;
                }
                self.received.insert(rebuilt);
            }
            None => {
                if tree == self.store.empty_tree() {
                    self.store.ensure_empty_tree()?;
                } else if !self.present(tree) {
                    return Err(refused(what(), format!("its tree {tree} was not sent")));
                } else if self.store.tree(tree)?.get(RESERVED).is_some() {
                    return Err(refused(what(), format!("its root holds {RESERVED}")));
                }
            }
        }
        self.room_for("a commit", data.len())?;
        let got = self.store.write_raw(ObjectKind::Commit, data)?;
        self.received.insert(got);
        self.kinds.insert(got, ObjectKind::Commit);
        self.commits += 1;
        self.objects += 1;
        Ok(())
    }

    /// Ends the transfer: `want` must now be here. Objects are not synced here: moving a ref
    /// syncs everything written first (see [`Store::sync_written`]).
    pub fn finish(mut self, want: ObjectId) -> Result<()> {
        if self.stream.is_some() {
            return Err(refused(
                format!("the transfer of {want}"),
                "it ended inside a blob's parts",
            ));
        }
        self.write_blobs()?;
        if !self.present(want) {
            return Err(refused(
                format!("the transfer of {want}"),
                "it ended without that commit",
            ));
        }
        Ok(())
    }
}

/// A tree entry name a peer may send: one safe component, and no spelling of `.git` that a
/// checkout would take for the repository itself. (`.gitdb` is refused at the root, by the
/// commit check: below it, it is an ordinary key name.)
fn check_entry_name(name: &[u8]) -> std::result::Result<(), String> {
    let shown = String::from_utf8_lossy(name);
    if name.is_empty() || name == b"." || name == b".." {
        return Err(format!("an entry is named {shown:?}"));
    }
    if name.contains(&b'/') || name.contains(&0) {
        return Err(format!("the entry name {shown:?} holds '/' or NUL"));
    }
    if let Ok(s) = std::str::from_utf8(name)
        && super::names::is_dot_git(s)
    {
        return Err(format!("an entry is named {shown:?}, a spelling of .git"));
    }
    Ok(())
}

/// Whether a tree's entries are as git writes them: each mode one of git's five, spelled
/// without a leading zero, and the names unique and in git's order (a directory sorts as if
/// its name ended in `/`). `git fsck --strict` calls the rest `badFilemode`,
/// `zeroPaddedFilemode`, `duplicateEntries` and `treeNotSorted`.
fn check_canonical(tree: &gix::objs::TreeRef<'_>) -> std::result::Result<(), String> {
    const MODES: [&[u8]; 5] = [b"40000", b"100644", b"100755", b"120000", b"160000"];
    let mut names = HashSet::with_capacity(tree.entries.len());
    let mut previous: Option<(&[u8], bool)> = None;
    for e in &tree.entries {
        let name: &[u8] = e.filename.as_ref();
        let shown = || String::from_utf8_lossy(name).into_owned();
        let mut buf = [0u8; 6];
        let mode: &[u8] = e.mode.as_bytes(&mut buf).as_ref();
        if !MODES.contains(&mode) {
            return Err(format!(
                "its entry {:?} has mode {}, which git does not write",
                shown(),
                String::from_utf8_lossy(mode)
            ));
        }
        if !names.insert(name) {
            return Err(format!("it names {:?} twice", shown()));
        }
        let this = (name, e.mode.is_tree());
        if let Some(before) = previous
            && git_order(before, this) != std::cmp::Ordering::Less
        {
            return Err(format!("its entry {:?} is out of git's order", shown()));
        }
        previous = Some(this);
    }
    Ok(())
}

/// Git's order of tree entries: by name bytes, a directory's name read as ending in `/`.
fn git_order(a: (&[u8], bool), b: (&[u8], bool)) -> std::cmp::Ordering {
    let end = |(name, dir): (&[u8], bool), i: usize| match name.get(i) {
        Some(&c) => c,
        None if dir => b'/',
        None => 0,
    };
    let common = a.0.len().min(b.0.len());
    match a.0[..common].cmp(&b.0[..common]) {
        std::cmp::Ordering::Equal => end(a, common)
            .cmp(&end(b, common))
            .then(a.0.len().cmp(&b.0.len())),
        other => other,
    }
}

/// A path in an edit: components as [`check_entry_name`] allows (the tree writer then escapes
/// them as it does for local keys).
fn check_edit_path(path: &str) -> std::result::Result<(), String> {
    if path.len() > 4096 {
        return Err("an edit's path is over 4096 bytes".into());
    }
    for (i, c) in path.split('/').enumerate() {
        if i == 0 && c == RESERVED {
            return Err(format!(
                "the edit of {path:?} is in the reserved {RESERVED}"
            ));
        }
        if c == ".git" {
            // A key may be named `.git` (the tree writer escapes it): only the raw tree name
            // is dangerous.
            continue;
        }
        check_entry_name(c.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CacheConfig, Signature};

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open_or_create(&dir.path().join("r.git"), CacheConfig::default()).unwrap();
        (dir, s)
    }

    fn commit(s: &Store, parent: Option<ObjectId>, edits: &[(&str, Option<&[u8]>)]) -> ObjectId {
        let base = match parent {
            Some(p) => s.commit_info(p).unwrap().tree,
            None => s.empty_tree(),
        };
        let ids: Vec<(String, Option<ObjectId>)> = edits
            .iter()
            .map(|(p, v)| (p.to_string(), v.map(|v| s.write_blob(v).unwrap())))
            .collect();
        let tree = s
            .write_tree(
                base,
                ids.iter().map(|(p, id)| match id {
                    Some(id) => TreeEdit::Upsert {
                        path: p,
                        mode: ValueMode::Regular,
                        id: *id,
                    },
                    None => TreeEdit::Remove { path: p },
                }),
            )
            .unwrap();
        let sig = Signature {
            name: "t".into(),
            email: "t@t".into(),
            seconds: 1,
        };
        let parents: Vec<ObjectId> = parent.into_iter().collect();
        s.write_commit(tree, &parents, &sig, "m\n").unwrap()
    }

    fn transfer(from: &Store, to: &Store, want: ObjectId, haves: &[ObjectId]) -> Result<Sent> {
        let mut items = Vec::new();
        let mut sent = Sent::default();
        for c in from.commits_missing(want, haves)? {
            from.export_commit(c, &mut sent, &mut |i| {
                items.push(i);
                Ok(())
            })?;
        }
        let mut imp = Importer::new(to);
        for i in items {
            imp.add(i)?;
        }
        imp.finish(want)?;
        Ok(sent)
    }

    #[test]
    fn a_chain_travels_compact_and_checks_out() {
        let (_d1, a) = store();
        let (_d2, b) = store();
        let c1 = commit(&a, None, &[("x/y", Some(b"1")), ("z", Some(b"2"))]);
        let c2 = commit(&a, Some(c1), &[("x/y", Some(b"3")), ("z", None)]);
        let sent = transfer(&a, &b, c2, &[]).unwrap();
        assert_eq!((sent.compact, sent.whole), (2, 0));
        assert_eq!(
            b.commit_info(c2).unwrap().tree,
            a.commit_info(c2).unwrap().tree
        );
        // An incremental transfer sends only the new commit.
        let c3 = commit(&a, Some(c2), &[("n", Some(b"4"))]);
        assert_eq!(a.commits_missing(c3, &[c2]).unwrap(), vec![c3]);
        transfer(&a, &b, c3, &[c2]).unwrap();
        assert!(b.has_object(c3));
    }

    #[test]
    fn a_tree_that_does_not_rebuild_travels_whole() {
        let (_d1, a) = store();
        let (_d2, b) = store();
        // A raw `.gitattributes` (an alias: gitdb would write `%.gitattributes`) as stock git
        // writes it: the rebuild would escape it, so the sender sends the tree.
        let blob = a.write_blob(b"* text\n").unwrap();
        let mut t = gix::objs::Tree::empty();
        t.entries.push(gix::objs::tree::Entry {
            mode: gix::objs::tree::EntryKind::Blob.into(),
            filename: ".gitattributes".into(),
            oid: blob,
        });
        let mut raw = Vec::new();
        gix::objs::WriteTo::write_to(&t, &mut raw).unwrap();
        let tree = a.write_raw(ObjectKind::Tree, &raw).unwrap();
        let sig = Signature {
            name: "git".into(),
            email: "g@g".into(),
            seconds: 1,
        };
        let c = a.write_commit(tree, &[], &sig, "stock\n").unwrap();
        let sent = transfer(&a, &b, c, &[]).unwrap();
        assert_eq!((sent.compact, sent.whole), (0, 1));
        assert!(b.has_object(tree));
    }

    #[test]
    fn hostile_items_are_refused() {
        let (_d1, a) = store();
        let (_d2, b) = store();
        let c1 = commit(&a, None, &[("k", Some(b"v"))]);
        let (_, data) = a.raw_object(c1).unwrap();
        // The blob the edit names was not sent.
        let blob = a.hash_blob(b"v").unwrap();
        let edits = vec![EntryEdit {
            path: "k".into(),
            value: Some((ValueMode::Regular, EditBlob::Known(blob))),
        }];
        let mut imp = Importer::new(&b);
        let e = imp
            .add(Item::Commit {
                data: data.clone(),
                edits: Some(edits.clone()),
            })
            .unwrap_err();
        assert!(e.to_string().contains("not sent"), "{e}");
        // An edit that rebuilds another tree than the commit names.
        let mut imp = Importer::new(&b);
        imp.add(Item::Blob(b"w".to_vec())).unwrap();
        let other = b.hash_blob(b"w").unwrap();
        let e = imp
            .add(Item::Commit {
                data: data.clone(),
                edits: Some(vec![EntryEdit {
                    path: "k".into(),
                    value: Some((ValueMode::Regular, EditBlob::Known(other))),
                }]),
            })
            .unwrap_err();
        assert!(e.to_string().contains("rebuild"), "{e}");
        assert!(!b.has_object(c1));
        // Hostile paths.
        for path in ["..", "a/../b", ".gitdb", "a//b", "a\0b"] {
            let mut imp = Importer::new(&b);
            imp.add(Item::Blob(b"v".to_vec())).unwrap();
            let e = imp
                .add(Item::Commit {
                    data: data.clone(),
                    edits: Some(vec![EntryEdit {
                        path: path.into(),
                        value: Some((ValueMode::Regular, EditBlob::Known(blob))),
                    }]),
                })
                .unwrap_err();
            assert!(matches!(e, StoreError::Refused { .. }), "{path}: {e}");
        }
        // A whole tree holding `.git` or `..`.
        for name in [".git", ".GIT", "..", "git~1"] {
            let mut t = gix::objs::Tree::empty();
            t.entries.push(gix::objs::tree::Entry {
                mode: gix::objs::tree::EntryKind::Blob.into(),
                filename: name.into(),
                oid: blob,
            });
            let mut raw = Vec::new();
            gix::objs::WriteTo::write_to(&t, &mut raw).unwrap();
            let mut imp = Importer::new(&b);
            imp.add(Item::Blob(b"v".to_vec())).unwrap();
            let e = imp.add(Item::Tree(raw)).unwrap_err();
            assert!(matches!(e, StoreError::Refused { .. }), "{name}: {e}");
        }
        // Trees git would not write, whose names and objects are all fine: fsck --strict
        // would refuse the repository that kept them.
        let sub = {
            let mut imp = Importer::new(&b);
            imp.add(Item::Blob(b"v".to_vec())).unwrap();
            let mut t = gix::objs::Tree::empty();
            t.entries.push(gix::objs::tree::Entry {
                mode: gix::objs::tree::EntryKind::Blob.into(),
                filename: "x".into(),
                oid: blob,
            });
            let mut raw = Vec::new();
            gix::objs::WriteTo::write_to(&t, &mut raw).unwrap();
            imp.add(Item::Tree(raw.clone())).unwrap();
            gix::objs::compute_hash(gix::hash::Kind::Sha1, ObjectKind::Tree, &raw).unwrap()
        };
        let entry = |mode: &str, name: &str, id: ObjectId| {
            let mut e = format!("{mode} {name}\0").into_bytes();
            e.extend_from_slice(id.as_slice());
            e
        };
        for (what, raw) in [
            (
                "out of order",
                [entry("100644", "b", blob), entry("100644", "a", blob)].concat(),
            ),
            (
                "twice",
                [entry("100644", "a", blob), entry("100644", "a", blob)].concat(),
            ),
            (
                "twice, as a value and a directory",
                [entry("120000", "a", blob), entry("40000", "a", sub)].concat(),
            ),
            ("mode 100664", entry("100664", "a", blob)),
            ("a zero-padded mode", entry("040000", "a", sub)),
        ] {
            let mut imp = Importer::new(&b);
            imp.add(Item::Blob(b"v".to_vec())).unwrap();
            let e = imp.add(Item::Tree(raw)).unwrap_err();
            assert!(matches!(e, StoreError::Refused { .. }), "{what}: {e}");
        }
        // A directory sorts as if named `a/`: after `a.b`, before `a0`.
        let ok = [
            entry("100644", "a.b", blob),
            entry("40000", "a", sub),
            entry("100644", "a0", blob),
        ]
        .concat();
        let mut imp = Importer::new(&b);
        imp.add(Item::Blob(b"v".to_vec())).unwrap();
        imp.add(Item::Tree(ok)).unwrap();
        // Garbage.
        let mut imp = Importer::new(&b);
        assert!(imp.add(Item::Tree(b"garbage".to_vec())).is_err());
        assert!(
            imp.add(Item::Commit {
                data: b"garbage".to_vec(),
                edits: None
            })
            .is_err()
        );
        // A transfer that ends without its commit.
        let imp = Importer::new(&b);
        assert!(imp.finish(c1).is_err());
    }

    /// `.gitmodules` and `.gitattributes` from a peer hold only what `git fsck` accepts: a
    /// bad one would make every later `git fsck` and fsck-checking clone refuse the
    /// repository. Checked whether the blob came in this transfer (still buffered) or was
    /// there before.
    #[test]
    fn checked_files_hold_what_git_fsck_accepts() {
        let (_d, b) = store();
        let bad_modules = b"[submodule \"a\"]\n\tpath = a\n\turl = -u\n".to_vec();
        let good_modules = b"[submodule \"a\"]\n\tpath = a\n\turl = ../a\n".to_vec();
        let long_attrs = [vec![b'a'; 3000], b"\n".to_vec()].concat();
        let before = b.write_blob(&bad_modules).unwrap();
        assert_eq!(before, b.hash_blob(&bad_modules).unwrap());
        let tree = |name: &str, kind: gix::objs::tree::EntryKind, oid: ObjectId| {
            let mut t = gix::objs::Tree::empty();
            t.entries.push(gix::objs::tree::Entry {
                mode: kind.into(),
                filename: name.into(),
                oid,
            });
            let mut raw = Vec::new();
            gix::objs::WriteTo::write_to(&t, &mut raw).unwrap();
            raw
        };
        use gix::objs::tree::EntryKind as K;
        for (name, kind, data, ok) in [
            (".gitmodules", K::Blob, &bad_modules, false),
            (".GitModules", K::Blob, &bad_modules, false),
            ("gitmod~1", K::Blob, &bad_modules, false),
            (".gitmodules", K::Link, &good_modules, false),
            (".gitmodules", K::Blob, &good_modules, true),
            (".gitattributes", K::Blob, &long_attrs, false),
            (".gitattributes", K::Link, &long_attrs, true),
            ("plain", K::Blob, &bad_modules, true),
        ] {
            for sent in [true, false] {
                let mut imp = Importer::new(&b);
                let id = if sent {
                    imp.add(Item::Blob(data.clone())).unwrap();
                    b.hash_blob(data).unwrap()
                } else {
                    b.write_blob(data).unwrap()
                };
                let r = imp.add(Item::Tree(tree(name, kind, id)));
                assert_eq!(r.is_ok(), ok, "{name} {kind:?} sent={sent}: {r:?}");
                if let Err(e) = r {
                    assert!(matches!(e, StoreError::Refused { .. }), "{name}: {e}");
                }
            }
        }
        // A `.gitmodules` directory.
        let mut imp = Importer::new(&b);
        let sub = b
            .write_tree(
                b.empty_tree(),
                [TreeEdit::Upsert {
                    path: "x",
                    mode: ValueMode::Regular,
                    id: before,
                }],
            )
            .unwrap();
        assert!(
            imp.add(Item::Tree(tree(".gitmodules", K::Tree, sub)))
                .is_err()
        );
    }

    #[test]
    fn a_blob_in_parts_is_written_as_it_comes_and_blocks_other_items() {
        let (_d1, a) = store();
        let (_d2, b) = store();
        let data = vec![7u8; 3 << 20];
        let id = a.write_blob(&data).unwrap();
        let mut imp = Importer::new(&b);
        imp.begin_blob(data.len() as u64).unwrap();
        imp.blob_part(&data[..1 << 20]).unwrap();
        // Nothing else while the blob is under way, not even another blob.
        assert!(imp.add(Item::Blob(b"x".to_vec())).is_err());
        assert!(imp.begin_blob(1).is_err());
        imp.blob_part(&data[1 << 20..]).unwrap();
        assert_eq!(imp.end_blob().unwrap(), id);
        assert!(b.has_object(id));
        // A tree may name it at once.
        let mut t = gix::objs::Tree::empty();
        t.entries.push(gix::objs::tree::Entry {
            mode: gix::objs::tree::EntryKind::Blob.into(),
            filename: "big".into(),
            oid: id,
        });
        let mut raw = Vec::new();
        gix::objs::WriteTo::write_to(&t, &mut raw).unwrap();
        imp.add(Item::Tree(raw)).unwrap();
        // A transfer that ends inside a blob is refused.
        let mut imp = Importer::new(&b);
        imp.begin_blob(10).unwrap();
        imp.blob_part(b"12345").unwrap();
        assert!(imp.finish(c_dummy()).is_err());
    }

    fn c_dummy() -> ObjectId {
        ObjectId::null(gix::hash::Kind::Sha1)
    }

    #[test]
    fn buffered_blobs_are_written_once_they_hold_many_bytes() {
        let (_d, b) = store();
        let mut imp = Importer::new(&b);
        let mut ids = Vec::new();
        // Distinct blobs of 4 MiB: far fewer than the count that flushes the buffer.
        for i in 0..(BUFFER_BYTES / (4 << 20) + 1) {
            let data = vec![i as u8; 4 << 20];
            ids.push(b.hash_blob(&data).unwrap());
            imp.add(Item::Blob(data)).unwrap();
        }
        assert!(imp.buffered < BUFFER_BYTES, "{} bytes held", imp.buffered);
        // All but the last went to disk when the buffer reached its bound.
        let (last, written) = ids.split_last().unwrap();
        assert!(written.iter().all(|&id| b.has_object(id)));
        assert!(!b.has_object(*last));
    }
}
