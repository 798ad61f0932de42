//! Keys: the validated, normalized name of a value in the key tree.
//!
//! A key is a `/`-separated path (`/users/alice/profile`) that becomes the git tree path
//! `users/alice/profile`. Everything that reaches the repository passes through [`Key::parse`],
//! so every key is one the mount can show as a file: no empty, `.` or `..` components, no NUL,
//! no component over 255 bytes (the FUSE/POSIX name limit), and nothing named `.gitdb` at the
//! root, where the mount keeps its control directory. Keys are the user's real names: `.git`
//! and the other spellings `git fsck` refuses in a tree are valid keys, which the store writes
//! under an escaped tree name (`crate::store::names`), so the repository stays fsck-clean.

use std::fmt;

/// The longest component, in bytes, that a key may have (POSIX `NAME_MAX`).
pub const MAX_COMPONENT_LEN: usize = 255;
/// The root name reserved for the mount's control directory.
pub const RESERVED_ROOT_NAME: &str = ".gitdb";

/// Why a string is not a valid key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("invalid key {key:?}: empty path component")]
    EmptyComponent { key: String },
    #[error("invalid key {key:?}: component {component:?} is not allowed")]
    InvalidComponent { key: String, component: String },
    #[error("invalid key {key:?}: contains a NUL byte")]
    Nul { key: String },
    #[error(
        "invalid key {key:?}: component of {len} bytes exceeds the {MAX_COMPONENT_LEN}-byte limit"
    )]
    TooLong { key: String, len: usize },
    #[error("invalid key {key:?}: {RESERVED_ROOT_NAME:?} is reserved at the root")]
    Reserved { key: String },
    #[error("the root is a directory, not a key")]
    Root,
}

/// A normalized key: no leading or trailing `/`, every component valid. The root is the empty key,
/// valid as a prefix but never as a value.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Key(String);

impl Key {
    /// The root prefix.
    pub fn root() -> Key {
        Key(String::new())
    }

    /// Parses and normalizes `s`: leading and trailing `/` are dropped, then every component is
    /// checked. The root (`""` or `"/"`) is accepted; callers that need a value key use
    /// [`Key::parse_value`].
    pub fn parse(s: &str) -> Result<Key, KeyError> {
        let trimmed = s.trim_matches('/');
        if trimmed.is_empty() {
            if s.contains('\0') {
                return Err(KeyError::Nul { key: s.to_owned() });
            }
            return Ok(Key::root());
        }
        if trimmed.contains('\0') {
            return Err(KeyError::Nul { key: s.to_owned() });
        }
        for (i, component) in trimmed.split('/').enumerate() {
            check_component(s, component)?;
            if i == 0 && component == RESERVED_ROOT_NAME {
                return Err(KeyError::Reserved { key: s.to_owned() });
            }
        }
        Ok(Key(trimmed.to_owned()))
    }

    /// Like [`Key::parse`], but the root is an error: it can hold no value.
    pub fn parse_value(s: &str) -> Result<Key, KeyError> {
        let key = Key::parse(s)?;
        if key.is_root() {
            return Err(KeyError::Root);
        }
        Ok(key)
    }

    /// The key `self/name`, with `name` checked as one component.
    pub fn join(&self, name: &str) -> Result<Key, KeyError> {
        let full = if self.0.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{}", self.0, name)
        };
        if name.contains('/') {
            return Err(KeyError::InvalidComponent {
                key: full,
                component: name.to_owned(),
            });
        }
        if name.contains('\0') {
            return Err(KeyError::Nul { key: full });
        }
        check_component(&full, name)?;
        if self.0.is_empty() && name == RESERVED_ROOT_NAME {
            return Err(KeyError::Reserved { key: full });
        }
        Ok(Key(full))
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The tree path: `users/alice/profile` (empty for the root).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last component (empty for the root).
    pub fn name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or("")
    }

    /// The parent prefix (`None` for the root).
    pub fn parent(&self) -> Option<Key> {
        if self.0.is_empty() {
            return None;
        }
        Some(match self.0.rfind('/') {
            Some(i) => Key(self.0[..i].to_owned()),
            None => Key::root(),
        })
    }

    /// Components, root first.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|c| !c.is_empty())
    }

    /// Proper ancestors as tree paths, root (`""`) first: `a/b/c` gives `""`, `a`, `a/b`.
    pub fn ancestors(&self) -> impl Iterator<Item = &str> {
        let s = self.0.as_str();
        std::iter::once("")
            .chain(
                s.match_indices('/')
                    .map(move |(i, _)| &s[..i])
                    .filter(|p| !p.is_empty()),
            )
            .take(if s.is_empty() { 0 } else { usize::MAX })
    }

    /// Whether `other` lies strictly below this prefix.
    pub fn is_ancestor_of(&self, other: &Key) -> bool {
        if self.0.is_empty() {
            return !other.0.is_empty();
        }
        other.0.len() > self.0.len()
            && other.0.starts_with(&self.0)
            && other.0.as_bytes()[self.0.len()] == b'/'
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", self.0)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key(/{})", self.0)
    }
}

fn check_component(key: &str, component: &str) -> Result<(), KeyError> {
    if component.is_empty() {
        return Err(KeyError::EmptyComponent {
            key: key.to_owned(),
        });
    }
    if component.len() > MAX_COMPONENT_LEN {
        return Err(KeyError::TooLong {
            key: key.to_owned(),
            len: component.len(),
        });
    }
    if component == "." || component == ".." {
        return Err(KeyError::InvalidComponent {
            key: key.to_owned(),
            component: component.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalizes_leading_and_trailing_slashes() {
        assert_eq!(
            Key::parse("/users/alice/profile").unwrap().as_str(),
            "users/alice/profile"
        );
        assert_eq!(Key::parse("users/alice/").unwrap().as_str(), "users/alice");
        assert!(Key::parse("/").unwrap().is_root());
        assert!(Key::parse("").unwrap().is_root());
    }

    #[test]
    fn rejects_each_invalid_case_with_its_own_error() {
        assert!(matches!(
            Key::parse("a//b"),
            Err(KeyError::EmptyComponent { .. })
        ));
        assert!(matches!(
            Key::parse("a/./b"),
            Err(KeyError::InvalidComponent { .. })
        ));
        assert!(matches!(
            Key::parse("a/.."),
            Err(KeyError::InvalidComponent { .. })
        ));
        assert!(matches!(Key::parse("a/\0b"), Err(KeyError::Nul { .. })));
        let long = "x".repeat(256);
        assert!(matches!(
            Key::parse(&long),
            Err(KeyError::TooLong { len: 256, .. })
        ));
        assert!(Key::parse(&"x".repeat(255)).is_ok());
        assert!(matches!(
            Key::parse("/.gitdb/ctl"),
            Err(KeyError::Reserved { .. })
        ));
        assert!(
            Key::parse("/a/.gitdb").is_ok(),
            ".gitdb is reserved only at the root"
        );
        assert!(matches!(Key::parse_value("/"), Err(KeyError::Root)));
    }

    #[test]
    fn accepts_names_git_fsck_refuses_in_a_tree() {
        // The store escapes them (store::names); as keys they are ordinary names.
        for name in [
            ".git",
            ".GIT",
            ".Git.",
            ".git ",
            "git~1",
            ".g\u{200c}it",
            ".gitmodules",
        ] {
            let k = Key::parse(&format!("a/{name}/HEAD")).unwrap();
            assert_eq!(k.components().nth(1), Some(name));
        }
    }

    #[test]
    fn ancestors_parent_and_name() {
        let k = Key::parse("a/b/c").unwrap();
        assert_eq!(k.ancestors().collect::<Vec<_>>(), vec!["", "a", "a/b"]);
        assert_eq!(k.parent().unwrap().as_str(), "a/b");
        assert_eq!(k.name(), "c");
        assert_eq!(
            Key::parse("a").unwrap().ancestors().collect::<Vec<_>>(),
            vec![""]
        );
        assert_eq!(Key::root().ancestors().count(), 0);
        assert!(Key::parse("a").unwrap().is_ancestor_of(&k));
        assert!(!Key::parse("a/b/c").unwrap().is_ancestor_of(&k));
        assert!(
            !Key::parse("a/b/cd")
                .unwrap()
                .is_ancestor_of(&Key::parse("a/b/c").unwrap())
        );
        assert!(
            !Key::parse("a/b")
                .unwrap()
                .is_ancestor_of(&Key::parse("a/bc").unwrap())
        );
        assert!(Key::root().is_ancestor_of(&k));
    }

    #[test]
    fn join_checks_the_component() {
        let root = Key::root();
        assert_eq!(root.join("a").unwrap().as_str(), "a");
        assert!(matches!(
            root.join(".gitdb"),
            Err(KeyError::Reserved { .. })
        ));
        assert!(root.join("a/b").is_err());
        assert_eq!(Key::parse("a").unwrap().join("b").unwrap().as_str(), "a/b");
    }

    proptest! {
        #[test]
        fn parse_is_idempotent_and_display_round_trips(s in "[a-z./\\x00 ~]{0,24}") {
            if let Ok(k) = Key::parse(&s) {
                let again = Key::parse(&k.to_string()).unwrap();
                prop_assert_eq!(&again, &k);
                prop_assert!(!k.as_str().starts_with('/') && !k.as_str().ends_with('/'));
                for c in k.components() {
                    prop_assert!(!c.is_empty() && c != "." && c != ".." && !c.contains('\0'));
                }
            }
        }

        #[test]
        fn join_agrees_with_parse(parent in "[a-c]{1,3}(/[a-c]{1,3}){0,2}", name in "[a-c.]{1,4}") {
            let p = Key::parse(&parent).unwrap();
            let joined = p.join(&name);
            let parsed = Key::parse(&format!("{parent}/{name}"));
            prop_assert_eq!(joined.is_ok(), parsed.is_ok());
            if let (Ok(a), Ok(b)) = (joined, parsed) { prop_assert_eq!(a, b); }
        }
    }
}
