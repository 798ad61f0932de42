//! `gitdb show` and `gitdb diff`: history read straight from the repository (through db's
//! history verbs; no daemon needed, none asked: a commit never changes), printed as
//! `git show --name-status` would, one `A|M|D /key` line per changed key.

use std::io::Write;

use super::error::Result;
use crate::GitDb;
use crate::db::{DiffEntry, DiffKind};
use crate::door::exec::display_key;

/// `show REV`: the commit's id, author and message, then the keys it changed (against its
/// first parent; every key for a root commit). `show REV KEY`: the value of KEY at REV, or
/// exit 1 with a note on `err` when it had none.
pub fn show(
    db: &GitDb,
    rev: &str,
    key: Option<&str>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8> {
    if let Some(key) = key {
        return match db.get_at(rev, key)? {
            Some(v) => {
                out.write_all(&v)?;
                Ok(0)
            }
            None => {
                writeln!(err, "gitdb: no such key at {rev}: {}", display_key(key))?;
                Ok(1)
            }
        };
    }
    let id = db.resolve_rev(rev)?;
    let info = db.commit_info(id)?;
    writeln!(out, "commit {id}")?;
    writeln!(out, "author {}", info.author)?;
    writeln!(out)?;
    for line in info.message.lines() {
        writeln!(out, "    {line}")?;
    }
    let changes = match info.parents.first() {
        Some(p) => db.diff_heads(Some(*p), Some(id))?,
        None => db
            .list_recursive_at(&id.to_string())?
            .into_iter()
            .map(|key| DiffEntry {
                key,
                change: DiffKind::Added,
            })
            .collect(),
    };
    writeln!(out)?;
    print_changes(&changes, out)?;
    Ok(0)
}

/// `diff FROM TO`: the keys that differ going from FROM to TO.
pub fn diff(db: &GitDb, from: &str, to: &str, out: &mut dyn Write) -> Result<u8> {
    print_changes(&db.diff(from, to)?, out)?;
    Ok(0)
}

fn print_changes(changes: &[DiffEntry], out: &mut dyn Write) -> std::io::Result<()> {
    for c in changes {
        writeln!(out, "{} /{}", diff_letter(c.change), c.key)?;
    }
    Ok(())
}

/// git's letter for a change.
pub fn diff_letter(k: DiffKind) -> char {
    match k {
        DiffKind::Added => 'A',
        DiffKind::Modified => 'M',
        DiffKind::Deleted => 'D',
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{NodeId, Options};

    fn text(b: Vec<u8>) -> String {
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn show_and_diff_print_commits_changes_and_values() {
        let dir = tempfile::tempdir().unwrap();
        let db = GitDb::open(
            dir.path().join("r.git"),
            NodeId::new("n1").unwrap(),
            Options::default(),
        )
        .unwrap();
        db.set("/a", b"1").unwrap();
        db.set("/d/b", b"2").unwrap();
        db.commit("first\n\nsecond line", 1000).unwrap();
        db.set("/a", b"3").unwrap();
        db.delete("/d/b").unwrap();
        db.set("/c", b"4").unwrap();
        db.commit("next", 2000).unwrap();

        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(show(&db, "main~1", None, &mut out, &mut err).unwrap(), 0);
        let root = text(out);
        let id = db.resolve_rev("main~1").unwrap();
        assert!(
            root.starts_with(&format!("commit {id}\nauthor n1")),
            "{root}"
        );
        assert!(
            root.contains("\n    first\n    \n    second line\n"),
            "{root}"
        );
        assert!(
            root.ends_with("\nA /a\nA /d/b\n"),
            "a root commit adds all: {root}"
        );

        let mut out = Vec::new();
        show(&db, "main", None, &mut out, &mut err).unwrap();
        assert!(text(out).ends_with("\nM /a\nA /c\nD /d/b\n"));

        let mut out = Vec::new();
        assert_eq!(diff(&db, "main", "main~1", &mut out).unwrap(), 0);
        assert_eq!(text(out), "M /a\nD /c\nA /d/b\n");

        let mut out = Vec::new();
        assert_eq!(
            show(&db, "main~1", Some("/a"), &mut out, &mut err).unwrap(),
            0
        );
        assert_eq!(out, b"1");
        assert!(err.is_empty());
        let mut out = Vec::new();
        assert_eq!(
            show(&db, "main", Some("/d/b"), &mut out, &mut err).unwrap(),
            1
        );
        assert!(out.is_empty());
        assert_eq!(text(err), "gitdb: no such key at main: /d/b\n");
        assert!(show(&db, "nosuchrev", None, &mut Vec::new(), &mut Vec::new()).is_err());
    }
}
