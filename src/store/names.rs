//! Tree names: how a key's component (the user's real name) is spelled in a git tree.
//!
//! `git fsck --strict` refuses trees holding `.git` in any spelling some filesystem would take
//! for it (any case, HFS+ ignorable code points, NTFS trailing dots and spaces, `git~1`,
//! `.git:stream`, a `\`-separated segment), and a `.gitmodules` that is a symlink or a
//! directory, a `.gitattributes` that is a directory, and either with contents it cannot
//! parse. Users still need such names (`git clone` or `cp -a` of a project into the mount), so
//! the store writes them under one reversible escape, the same on every node (merges and
//! gossip compare trees, so two nodes must spell a name alike):
//!
//! - a name is *escaped* when git's checks single it out by name (the `.git`, `.gitmodules`
//!   and `.gitattributes` families, see [`is_special`]) or when it begins with `%`;
//! - the escaped form is `%` followed by the name with `%` written `%25` and `\` written `%5C`
//!   (so `.git` is `%.git`, `%d` is `%%25d`, `a\.git` is `%a%5C.git`);
//! - every other name is stored as it is.
//!
//! An escaped form begins with `%` and holds no `\`, so none of git's name checks can match
//! it, and since every name beginning with `%` is escaped, two names never share a tree name.
//! The kind and contents of an entry play no part: a rule that looked at them would give one
//! key two tree names when it changed from a file to a symlink, and merges would keep both.
//!
//! Reading is lenient: a tree name that is not the canonical escape of some name (written by
//! stock git or by a gitdb before the escape, say `.gitattributes` or `%d`) is shown as it is.
//! Such a raw name is an *alias* of its key: when gitdb next writes or removes that key it
//! writes the canonical name and drops the alias (see the store's tree writer). If a tree holds
//! both a canonical name and its alias, the canonical entry is the key and the alias stays in
//! the tree, unseen.

use std::borrow::Cow;

/// The first character of every escaped tree name.
pub const ESCAPE: char = '%';

/// The name a key component is stored under in a tree.
pub fn tree_name(name: &str) -> Cow<'_, str> {
    if !name.starts_with(ESCAPE) && !is_special(name) {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 4);
    out.push(ESCAPE);
    for c in name.chars() {
        match c {
            '%' => out.push_str("%25"),
            '\\' => out.push_str("%5C"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The key component a tree entry named `raw` shows as: the unescaped name of a canonical
/// escape, any other UTF-8 name as it is (an alias, see the module docs). `None` for names
/// that are not UTF-8, which cannot be keys.
pub fn key_name(raw: &[u8]) -> Option<Cow<'_, str>> {
    let s = std::str::from_utf8(raw).ok()?;
    Some(match canonical_unescape(s) {
        Some(name) => Cow::Owned(name),
        None => Cow::Borrowed(s),
    })
}

/// Whether the tree name `raw` is an alias: read as itself, though gitdb would store that name
/// escaped.
pub fn is_alias(raw: &str) -> bool {
    canonical_unescape(raw).is_none() && tree_name(raw) != raw
}

/// The name `s` is the escape of, if `s` is exactly what [`tree_name`] writes for it.
fn canonical_unescape(s: &str) -> Option<String> {
    let mut rest = s.strip_prefix(ESCAPE)?;
    let mut out = String::with_capacity(rest.len());
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        match rest.get(i + 1..i + 3) {
            Some("25") => out.push('%'),
            Some("5C") => out.push('\\'),
            _ => return None,
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    // `%x` decodes to `x`, but `x` is stored as `x`: `%x` is then no escape, only a raw name.
    (tree_name(&out) == s).then_some(out)
}

/// Whether git's tree checks single out `name` by its spelling: `.git`, `.gitmodules` or
/// `.gitattributes` as HFS+ or NTFS would read it, in the whole name or in any segment after a
/// `\` (git checks those segments for `.git` and `.gitmodules`; `.gitattributes` is included
/// too, since a wider rule only escapes more). A port of git's `is_hfs_dotgit`,
/// `is_ntfs_dotgit`, `is_ntfs_dotgitmodules` and friends (git `utf8.c`, `path.c`, `fsck.c`).
pub fn is_special(name: &str) -> bool {
    // Every check below needs the name, or a segment after a `\`, to begin with `.`, `g`, `G`,
    // `~` (a fall-back short name) or an HFS+-ignorable (non-ASCII) character: most names are
    // decided here, which keeps decoding a large tree cheap.
    let first = name.as_bytes().first().copied().unwrap_or(b'a');
    if first.is_ascii() && !b".gG~".contains(&first) && !name.contains('\\') {
        return false;
    }
    matches_git_checks(name)
}

/// The files whose contents `git fsck` checks, singled out by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckedFile {
    Gitmodules,
    Gitattributes,
}

/// Which checked file a raw tree name is a spelling of, as git's fsck decides it: the whole
/// name under HFS+ rules, or the name or any segment after a `\` under NTFS rules.
pub fn checked_file(name: &str) -> Option<CheckedFile> {
    let first = name.as_bytes().first().copied().unwrap_or(b'a');
    if first.is_ascii() && !b".gG~".contains(&first) && !name.contains('\\') {
        return None;
    }
    let segs = || segments(name.as_bytes());
    if is_hfs_dot(name, "gitmodules")
        || segs().any(|s| is_ntfs_dot_generic(s, b"gitmodules", b"gi7eba"))
    {
        Some(CheckedFile::Gitmodules)
    } else if is_hfs_dot(name, "gitattributes")
        || segs().any(|s| is_ntfs_dot_generic(s, b"gitattributes", b"gi7d29"))
    {
        Some(CheckedFile::Gitattributes)
    } else {
        None
    }
}

/// Whether a raw tree name is a spelling of `.git` itself, which a checkout would take for the
/// repository (git fsck's `hasDotgit`). Narrower than [`is_special`]: stock git writes
/// `.gitattributes` and `.gitmodules` raw, and a peer may send such trees.
pub fn is_dot_git(name: &str) -> bool {
    is_hfs_dot(name, "git") || segments(name.as_bytes()).any(is_ntfs_dotgit)
}

/// The whole name, then what follows each `\` in it: git checks every such segment, since
/// Windows reads `\` as a directory separator.
fn segments(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::once(bytes).chain(
        bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\\')
            .map(|(i, _)| &bytes[i + 1..]),
    )
}

/// [`is_special`] without the shortcut.
fn matches_git_checks(name: &str) -> bool {
    if ["git", "gitmodules", "gitattributes"]
        .iter()
        .any(|needle| is_hfs_dot(name, needle))
    {
        return true;
    }
    segments(name.as_bytes()).any(|seg| {
        is_ntfs_dotgit(seg)
            || is_ntfs_dot_generic(seg, b"gitmodules", b"gi7eba")
            || is_ntfs_dot_generic(seg, b"gitattributes", b"gi7d29")
    })
}

/// HFS+: with the code points HFS+ ignores dropped and ASCII case folded, `name` is `.needle`.
fn is_hfs_dot(name: &str, needle: &str) -> bool {
    let mut chars = name.chars().filter(|c| !is_hfs_ignorable(*c));
    if chars.next() != Some('.') {
        return false;
    }
    for n in needle.chars() {
        match chars.next() {
            Some(c) if c.is_ascii() && c.to_ascii_lowercase() == n => {}
            _ => return false,
        }
    }
    chars.next().is_none()
}

/// The code points git's `next_hfs_char` skips.
fn is_hfs_ignorable(c: char) -> bool {
    matches!(c as u32, 0x200c..=0x200f | 0x202a..=0x202e | 0x206a..=0x206f | 0xfeff)
}

/// NTFS: `.git` or `git~1` (ASCII case folded), then only dots and spaces up to the end, a `:`
/// (an alternate data stream) or a directory separator.
fn is_ntfs_dotgit(name: &[u8]) -> bool {
    let rest = if name.len() >= 4 && name[..4].eq_ignore_ascii_case(b".git") {
        &name[4..]
    } else if name.len() >= 5 && name[..3].eq_ignore_ascii_case(b"git") && &name[3..5] == b"~1" {
        &name[5..]
    } else {
        return false;
    };
    for &c in rest {
        if c == b'\\' || c == b'/' || c == b':' {
            return true;
        }
        if c != b'.' && c != b' ' {
            return false;
        }
    }
    true
}

/// git's `is_ntfs_dot_generic`: `.name`, its 8.3 short name (`gitmod~1` .. `~4`) or a
/// fall-back short name (a prefix of `short_prefix`, `~` and digits, 8 characters in all), then
/// only dots and spaces up to the end or a `:`.
fn is_ntfs_dot_generic(name: &[u8], dotgit_name: &[u8], short_prefix: &[u8]) -> bool {
    let only_spaces_and_periods = |from: usize| {
        for &c in name.get(from..).unwrap_or(&[]) {
            if c == b':' {
                return true;
            }
            if c != b' ' && c != b'.' {
                return false;
            }
        }
        true
    };
    let len = dotgit_name.len();
    if name.first() == Some(&b'.')
        && name.len() > len
        && name[1..=len].eq_ignore_ascii_case(dotgit_name)
    {
        return only_spaces_and_periods(len + 1);
    }
    if name.len() >= 8
        && name[..6].eq_ignore_ascii_case(&dotgit_name[..6])
        && name[6] == b'~'
        && (b'1'..=b'4').contains(&name[7])
    {
        return only_spaces_and_periods(8);
    }
    let mut saw_tilde = false;
    let mut i = 0;
    while i < 8 {
        let Some(&c) = name.get(i) else {
            return false;
        };
        if saw_tilde {
            if !c.is_ascii_digit() {
                return false;
            }
        } else if c == b'~' {
            i += 1;
            match name.get(i) {
                Some(d) if (b'1'..=b'9').contains(d) => saw_tilde = true,
                _ => return false,
            }
        } else if i >= 6 || c & 0x80 != 0 || c.to_ascii_lowercase() != short_prefix[i] {
            return false;
        }
        i += 1;
    }
    only_spaces_and_periods(8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escapes_what_fsck_refuses_and_nothing_else() {
        for special in [
            ".git",
            ".GIT",
            ".Git.",
            ".git ",
            ".git. . ",
            ".git:stream",
            "git~1",
            "GIT~1 .",
            ".g\u{200c}it",
            "\u{feff}.git",
            "a\\.git",
            "x\\y\\git~1",
            ".gitmodules",
            ".GitModules .",
            "gitmod~1",
            "gi7eba~1",
            "gi7eb~12",
            ".gitattributes",
            "gitatt~3",
            "gi7d29~9",
            ".g\u{200d}itattributes",
            "a\\.gitmodules",
        ] {
            assert!(is_special(special), "{special:?}");
            let t = tree_name(special);
            assert!(
                t.starts_with('%') && !t.contains('\\') && !is_special(&t),
                "{t:?}"
            );
            assert_eq!(key_name(t.as_bytes()).as_deref(), Some(special));
        }
        for plain in [
            ".gitignore",
            ".github",
            ".git-blame-ignore-revs",
            ".gitkeep",
            "git",
            "git~2",
            "gitmod~5",
            "gi7eba~",
            "gi7eba",
            ".mailmap",
            "a\\b",
            "a:b",
            "50%",
        ] {
            assert!(!is_special(plain), "{plain:?}");
            assert_eq!(tree_name(plain), plain);
            assert_eq!(key_name(plain.as_bytes()).as_deref(), Some(plain));
        }
    }

    #[test]
    fn the_escape_character_is_escaped_and_raw_names_read_as_themselves() {
        assert_eq!(tree_name(".git"), "%.git");
        assert_eq!(tree_name("%d"), "%%25d");
        assert_eq!(tree_name("%.git"), "%%25.git");
        assert_eq!(tree_name("a\\.git"), "%a%5C.git");
        assert_eq!(key_name(b"%%25d").as_deref(), Some("%d"));
        // Not canonical escapes: read as they are, and written canonically next time.
        for raw in [
            "%d",
            "%",
            "%zz",
            "%%",
            "%.gitx",
            "%a%5c.git",
            ".gitattributes",
        ] {
            assert_eq!(key_name(raw.as_bytes()).as_deref(), Some(raw), "{raw:?}");
        }
        assert!(is_alias("%d") && is_alias(".gitattributes"));
        assert!(!is_alias("%.git") && !is_alias("plain"));
        assert_eq!(key_name(b"\xff"), None);
    }

    /// Names made mostly of the characters git's checks look at, so the special cases come up.
    fn name() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just(".".to_owned()),
            Just(".git".to_owned()),
            Just("git~1".to_owned()),
            Just("gitmodules".to_owned()),
            Just("gitattributes".to_owned()),
            Just("gi7eba~1".to_owned()),
            Just("gitmod~2".to_owned()),
            Just("%".to_owned()),
            Just("%25".to_owned()),
            Just("%5C".to_owned()),
            Just("\\".to_owned()),
            Just(":".to_owned()),
            Just(" ".to_owned()),
            Just("~".to_owned()),
            Just("\u{200c}".to_owned()),
            Just("\u{feff}".to_owned()),
            "[gGiItTmM1-9a-z]{1,3}",
            "[^/\u{0}]{1,2}",
        ];
        proptest::collection::vec(piece, 1..8).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]
        #[test]
        fn escape_round_trips_and_passes_the_fsck_name_checks(n in name()) {
            let t = tree_name(&n);
            let back = key_name(t.as_bytes());
            prop_assert_eq!(back.as_deref(), Some(n.as_str()));
            prop_assert!(!is_special(&t), "{:?} -> {:?}", n, t);
            prop_assert!(!is_alias(&t));
            if t != n {
                prop_assert!(t.starts_with('%') && !t.contains('\\'));
            }
        }

        #[test]
        fn the_shortcut_agrees_with_the_full_checks(n in name()) {
            prop_assert_eq!(is_special(&n), matches_git_checks(&n), "{:?}", n);
        }

        #[test]
        fn distinct_names_never_share_a_tree_name(a in name(), b in name()) {
            if a != b {
                prop_assert_ne!(tree_name(&a), tree_name(&b));
            }
        }

        #[test]
        fn any_tree_name_reads_back_to_itself_or_to_what_it_escapes(raw in name()) {
            let n = key_name(raw.as_bytes()).unwrap().into_owned();
            if is_alias(&raw) {
                prop_assert_eq!(&n, &raw);
            } else {
                prop_assert_eq!(tree_name(&n), raw.as_str());
            }
        }
    }
}
