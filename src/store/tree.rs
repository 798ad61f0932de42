//! Decoded trees: the shape a directory has once read, sorted for binary search by name.

use gix::ObjectId;

/// How a value is stored: git's three blob modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ValueMode {
    /// 100644
    Regular,
    /// 100755
    Executable,
    /// 120000: the value is the link target.
    Symlink,
}

impl ValueMode {
    pub fn git_kind(self) -> gix::object::tree::EntryKind {
        use gix::object::tree::EntryKind as K;
        match self {
            ValueMode::Regular => K::Blob,
            ValueMode::Executable => K::BlobExecutable,
            ValueMode::Symlink => K::Link,
        }
    }

    /// The git mode as an octal number (0o100644 ...).
    pub fn octal(self) -> u32 {
        self.git_kind() as u32
    }
}

/// What a tree entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    Value(ValueMode),
    Dir,
    /// A gitlink (submodule commit) made by stock git: kept as is, never shown as a key.
    Submodule,
}

/// One named entry of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    pub name: Box<str>,
    pub kind: EntryKind,
    pub id: ObjectId,
}

/// A decoded tree, named as keys are: escaped tree names show unescaped (see
/// [`super::names`]). Entries whose names are not UTF-8 (possible in trees written by stock
/// git), and an alias beside its canonical twin, are left out: they cannot be keys, and commits
/// keep them untouched because edits start from the stored tree, not from this view.
#[derive(Debug, Default)]
pub struct Tree {
    entries: Vec<TreeEntry>,
    /// Bytes held, for the cache weigher.
    weight: usize,
}

/// What one cached tree costs besides its entries: the `Tree`, its `Arc`, the vector's
/// allocation and the cache's slot. The cache's budget is in bytes of memory, so its weigher
/// must count what the allocator hands out, not just the names: with the names alone, a tree
/// of one entry counted 90 bytes and cost about 250, and the 20,000 root trees of 20,000
/// commits took 2.7 times the memory the budget said.
const TREE_BYTES: usize = 160;

/// What one entry costs: the `TreeEntry` in the vector and the allocation of its name
/// (glibc's smallest chunk is 32 bytes, then steps of 16, with 8 bytes of header).
fn entry_bytes(name: &str) -> usize {
    std::mem::size_of::<TreeEntry>() + (name.len() + 8).div_ceil(16).max(2) * 16
}

impl Tree {
    pub fn decode(data: &[u8], hash: gix::hash::Kind) -> Result<Tree, gix::Error> {
        let tree = gix::objs::TreeRef::from_bytes(data, hash)?;
        // (entry, is an alias): an alias sorts after its canonical twin and loses to it.
        let mut named: Vec<(TreeEntry, bool)> = tree
            .entries
            .iter()
            .filter_map(|e| {
                let name = super::names::key_name(e.filename)?;
                let alias = match &name {
                    std::borrow::Cow::Borrowed(raw) => super::names::is_alias(raw),
                    std::borrow::Cow::Owned(_) => false,
                };
                let kind = match e.mode.kind() {
                    gix::object::tree::EntryKind::Tree => EntryKind::Dir,
                    gix::object::tree::EntryKind::Blob => EntryKind::Value(ValueMode::Regular),
                    gix::object::tree::EntryKind::BlobExecutable => {
                        EntryKind::Value(ValueMode::Executable)
                    }
                    gix::object::tree::EntryKind::Link => EntryKind::Value(ValueMode::Symlink),
                    gix::object::tree::EntryKind::Commit => EntryKind::Submodule,
                };
                let entry = TreeEntry {
                    name: name.into(),
                    kind,
                    id: e.oid.to_owned(),
                };
                Some((entry, alias))
            })
            .collect();
        // Git orders a directory `a` as if named `a/`, and escaped names by their escape; we
        // want plain byte order of the key names to search by name.
        named.sort_by(|(a, x), (b, y)| a.name.as_bytes().cmp(b.name.as_bytes()).then(x.cmp(y)));
        named.dedup_by(|later, first| later.0.name == first.0.name);
        let entries: Vec<TreeEntry> = named.into_iter().map(|(e, _)| e).collect();
        let weight = entries.iter().map(|e| entry_bytes(&e.name)).sum::<usize>() + TREE_BYTES;
        Ok(Tree { entries, weight })
    }

    pub fn get(&self, name: &str) -> Option<&TreeEntry> {
        self.entries
            .binary_search_by(|e| e.name.as_bytes().cmp(name.as_bytes()))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// Entries in byte order of their names.
    pub fn entries(&self) -> &[TreeEntry] {
        &self.entries
    }

    pub fn weight(&self) -> usize {
        self.weight
    }
}
