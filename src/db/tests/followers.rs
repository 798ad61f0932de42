//! Read-only handles beside a writer: following its journal, and never showing a draft older
//! than the head they see.
//!
//! Kept apart because these run two handles on one repository, one of them without the lock.

use std::io::Write;

use super::*;

fn open_read_only(repo: &Path) -> GitDb {
    GitDb::open(
        repo,
        node("reader"),
        Options {
            read_only: true,
            ..Options::default()
        },
    )
    .unwrap()
}
/// A read-only handle beside a writer follows its journal: a draft appears, a commit replaces
/// it (never the old draft over the new head), a rollback and a rewrite are noticed, and
/// subscribers hear of each change.
#[test]
fn a_read_only_handle_follows_the_writers_journal() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo.git");
    let writer = open_at(&repo);
    writer.set("k", b"0").unwrap();
    writer.commit("c0", 1_000).unwrap();
    let reader = open_read_only(&repo);
    let events = reader.subscribe();
    writer.set("k", b"1").unwrap();
    writer.sync().unwrap();
    assert_eq!(get(&reader, "k"), Some(b"0".to_vec()));
    reader.refresh().unwrap();
    assert_eq!(get(&reader, "k"), Some(b"1".to_vec()));
    let ev = events.try_recv().unwrap();
    assert_eq!(
        (ev.origin, ev.changed),
        (HeadOrigin::FollowedWriter, vec!["k".into()])
    );
    writer.set("k", b"2").unwrap();
    writer.commit("c1", 2_000).unwrap();
    let moved = reader.refresh().unwrap();
    assert_eq!(
        moved.map(|m| m.new),
        Some(writer.head()),
        "the reader follows the head"
    );
    assert_eq!(get(&reader, "k"), Some(b"2".to_vec()));
    assert!(!reader.is_dirty());
    assert_eq!(events.try_recv().unwrap().changed, vec!["k".to_string()]);
    // A rollback resets the journal in place and the writer appends again past the old end.
    writer.set("k", b"3").unwrap();
    writer.set("other", b"x").unwrap();
    writer.sync().unwrap();
    reader.refresh().unwrap();
    assert_eq!(get(&reader, "k"), Some(b"3".to_vec()));
    writer.rollback().unwrap();
    writer.set("k", b"4").unwrap();
    writer.set("other", b"y").unwrap();
    writer.set("third", b"z").unwrap();
    writer.sync().unwrap();
    reader.refresh().unwrap();
    assert_eq!(get(&reader, "k"), Some(b"4".to_vec()));
    assert_eq!(get(&reader, "other"), Some(b"y".to_vec()));
    // A commit that leaves changes rewrites the journal (a new file).
    let writer = std::sync::Arc::new(writer);
    {
        let slot = writer.clone();
        *writer.after_ref_moved.lock().unwrap() = Some(Box::new(move |db: &GitDb| {
            let _ = &slot;
            db.set("during", b"d").unwrap();
        }));
    }
    writer.commit("c2", 3_000).unwrap();
    writer.sync().unwrap();
    reader.refresh().unwrap();
    assert_eq!(get(&reader, "during"), Some(b"d".to_vec()));
    assert_eq!(get(&reader, "k"), Some(b"4".to_vec()));
    assert_eq!(dirty_keys(&reader), vec!["/during"]);
    assert_eq!(reader.refresh().unwrap(), None);
}

/// Between the writer moving the ref and emptying the journal, a reader sees the journal's
/// `Base` disagree with the head: it shows the committed state alone (never the old draft
/// over the new head) until they agree again. A torn tail (the writer mid-append) is skipped
/// until it is whole.
#[test]
fn a_read_only_handle_never_shows_a_draft_older_than_its_head() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo.git");
    let writer = open_at(&repo);
    writer.set("k", b"0").unwrap();
    writer.commit("c0", 1_000).unwrap();
    writer.set("k", b"1").unwrap();
    writer.sync().unwrap();
    let journal_path = writer.git_dir().join("gitdb/journal");
    let reader = open_read_only(&repo);
    assert_eq!(get(&reader, "k"), Some(b"1".to_vec()));
    writer.set("k", b"2").unwrap();
    writer.sync().unwrap();
    let draft = std::fs::read(&journal_path).unwrap();
    // The writer commits k=2 but "dies" before the journal is emptied: the file still holds
    // the drafts k=1, k=2 on the old head, and the reader reads k=2 for the first time now.
    writer.commit("c1", 2_000).unwrap();
    let c1 = writer.head();
    drop(writer);
    std::fs::write(&journal_path, &draft).unwrap();
    reader.refresh().unwrap();
    assert_eq!(reader.head(), c1);
    assert_eq!(get(&reader, "k"), Some(b"2".to_vec()));
    assert!(
        !reader.is_dirty(),
        "the drafts are not shown over the new head"
    );
    // The writer comes back (and finds the journal committed), then appends a new draft; the
    // reader meets its last record in two halves.
    let writer = open_at(&repo);
    assert!(!writer.is_dirty());
    writer.set("k", b"3").unwrap();
    writer.sync().unwrap();
    let mut bytes = std::fs::read(&journal_path).unwrap();
    let whole = bytes.len();
    writer.set("t", b"torn").unwrap();
    writer.sync().unwrap();
    let full = std::fs::read(&journal_path).unwrap();
    bytes.extend_from_slice(&full[whole..whole + 5]);
    // What a reader may meet mid-append: half a record at the end.
    let half = dir.path().join("half");
    std::fs::write(&half, &bytes).unwrap();
    std::fs::rename(&half, &journal_path).unwrap();
    reader.refresh().unwrap();
    assert_eq!(get(&reader, "k"), Some(b"3".to_vec()));
    assert_eq!(get(&reader, "t"), None);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&journal_path)
        .unwrap()
        .write_all(&full[whole + 5..])
        .unwrap();
    reader.refresh().unwrap();
    assert_eq!(get(&reader, "t"), Some(b"torn".to_vec()));
}
