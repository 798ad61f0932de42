//! Tree paths as strings: joining and splitting them, and the range of a sorted map or set
//! that holds exactly the paths under a directory.
//!
//! Every layer names things by slash-separated paths without a leading `/` (`""` the root):
//! the store's trees, the db's keys and working layer, merge's results, the mount's
//! namespace. Kept outside the layers, like `memory.rs`, because each of them needs the same
//! few rules and a copy per layer drifted (one range stopped at `path0`, another scanned with
//! `take_while`, a third forgot the root).
//!
//! The range rule: in byte order `0` follows `/`, so the paths strictly below `dir` are
//! exactly those from `dir/` (included) to `dir0` (excluded) — one range of the map, never
//! `dir-x` or `dirx`, and never a scan.

use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};

/// `parent/name`, or `name` at the root.
pub fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        let mut s = String::with_capacity(parent.len() + 1 + name.len());
        s.push_str(parent);
        s.push('/');
        s.push_str(name);
        s
    }
}

/// The parent path and the last name of `path` (`"a/b"` -> `("a", "b")`, `"a"` -> `("", "a")`).
pub fn split(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

/// The bounds of the paths strictly below `dir` (`dir/...`; at the root, every path but the
/// root itself), for `BTreeMap::range` and `BTreeSet::range` (as `range::<str, _>`).
pub fn below(dir: &str) -> Below {
    if dir.is_empty() {
        return Below {
            bounds: String::new(),
            split: None,
        };
    }
    // Both bounds in one buffer, `dir/` then `dir0` ('0' follows '/'): one allocation per
    // range search (these run in every lookup of the overlay).
    let mut bounds = String::with_capacity(2 * dir.len() + 2);
    bounds.push_str(dir);
    bounds.push('/');
    bounds.push_str(dir);
    bounds.push('0');
    Below {
        split: Some(dir.len() + 1),
        bounds,
    }
}

/// The range [`below`] returns.
pub struct Below {
    bounds: String,
    /// Where the upper bound starts in `bounds`; None at the root (from `""`, excluded, on).
    split: Option<usize>,
}

impl RangeBounds<str> for Below {
    fn start_bound(&self) -> Bound<&str> {
        match self.split {
            Some(i) => Bound::Included(&self.bounds[..i]),
            None => Bound::Excluded(""),
        }
    }

    fn end_bound(&self) -> Bound<&str> {
        match self.split {
            Some(i) => Bound::Excluded(&self.bounds[i..]),
            None => Bound::Unbounded,
        }
    }
}

/// The entries of `map` at `root` and below it (`root/...`, but not `root-x`), in order:
/// one range of the map, not a scan of it. At the root (`""`), everything.
pub fn at_or_below<'a, V>(
    map: &'a BTreeMap<String, V>,
    root: &str,
) -> impl Iterator<Item = (&'a String, &'a V)> + 'a {
    let own = map.get_key_value(root);
    let rest = map.range::<str, _>(below(root));
    own.into_iter().chain(rest)
}

/// The name of `path` in `dir` when `path` is an immediate child of `dir` (`dir/name`, or
/// `name` at the root), for picking a directory's children out of a range [`below`] it.
pub fn child_of<'a>(dir: &str, path: &'a str) -> Option<&'a str> {
    let name = if dir.is_empty() {
        path
    } else {
        path.strip_prefix(dir)?.strip_prefix('/')?
    };
    (!name.is_empty() && !name.contains('/')).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_or_below_is_the_subtree_only() {
        let map: BTreeMap<String, u8> = ["a", "a-b", "a/x", "a/x/y", "ab", "b"]
            .iter()
            .map(|p| (p.to_string(), 0))
            .collect();
        let names = |root| {
            at_or_below(&map, root)
                .map(|(p, _)| p.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(names("a"), ["a", "a/x", "a/x/y"]);
        assert_eq!(names("a/x"), ["a/x", "a/x/y"]);
        assert_eq!(names("c"), Vec::<&str>::new());
        assert_eq!(names("").len(), map.len());
    }

    #[test]
    fn split_and_join() {
        assert_eq!(split("a/b/c"), ("a/b", "c"));
        assert_eq!(split("a"), ("", "a"));
        assert_eq!(join("", "a"), "a");
        assert_eq!(join("a", "b"), "a/b");
    }

    #[test]
    fn below_is_strict_and_children_are_one_level() {
        let set: std::collections::BTreeSet<String> = ["", "a", "a-b", "a/x", "a/x/y", "a0", "ab"]
            .iter()
            .map(|p| p.to_string())
            .collect();
        let below_of = |dir| {
            set.range::<str, _>(below(dir))
                .map(String::as_str)
                .collect::<Vec<_>>()
        };
        assert_eq!(below_of("a"), ["a/x", "a/x/y"]);
        assert_eq!(below_of("a/x"), ["a/x/y"]);
        assert_eq!(below_of("").len(), set.len() - 1);
        let children = |dir| {
            set.range::<str, _>(below(dir))
                .filter_map(|p| child_of(dir, p))
                .collect::<Vec<_>>()
        };
        assert_eq!(children("a"), ["x"]);
        assert_eq!(children(""), ["a", "a-b", "a0", "ab"]);
        assert_eq!(child_of("a", "ab"), None);
    }
}
