use super::*;

fn set(key: &str) -> Record {
    Record::Set {
        key: key.into(),
        mode: ValueMode::Regular,
        id: [7; 20],
        size: 3,
    }
}

#[test]
fn records_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let (mut j, recs) = Journal::open(&path).unwrap();
    assert!(recs.is_empty());
    j.append(&Record::base(None)).unwrap();
    j.append(&set("a")).unwrap();
    j.append(&Record::Delete { key: "b".into() }).unwrap();
    j.sync().unwrap();
    drop(j);
    let (_, recs) = Journal::open(&path).unwrap();
    assert_eq!(
        recs,
        vec![
            Record::base(None),
            set("a"),
            Record::Delete { key: "b".into() }
        ]
    );
}

#[test]
fn every_torn_tail_is_dropped_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let (mut j, _) = Journal::open(&path).unwrap();
    j.append(&set("a")).unwrap();
    j.append(&set("bb")).unwrap();
    drop(j);
    let full = std::fs::read(&path).unwrap();
    let first_end = MAGIC.len() + encode(&set("a")).unwrap().len();
    for cut in MAGIC.len()..full.len() {
        std::fs::write(&path, &full[..cut]).unwrap();
        let (mut j, recs) = Journal::open(&path).unwrap();
        let expect = if cut >= first_end {
            vec![set("a")]
        } else {
            vec![]
        };
        assert_eq!(recs, expect, "cut at {cut}");
        // Appending after a cut must produce a readable file again.
        j.append(&set("c")).unwrap();
        drop(j);
        let mut expect = expect;
        expect.push(set("c"));
        assert_eq!(
            Journal::read(&path).unwrap(),
            expect,
            "append after cut at {cut}"
        );
    }
}

#[test]
fn a_flipped_bit_stops_replay_at_that_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let (mut j, _) = Journal::open(&path).unwrap();
    j.append(&set("a")).unwrap();
    j.append(&set("b")).unwrap();
    drop(j);
    let mut data = std::fs::read(&path).unwrap();
    let last = data.len() - 1;
    data[last] ^= 0x40;
    std::fs::write(&path, &data).unwrap();
    assert_eq!(Journal::read(&path).unwrap(), vec![set("a")]);
}

fn big(key: &str, n: usize) -> Record {
    Record::SetInline {
        key: key.into(),
        mode: ValueMode::Regular,
        data: vec![0xa5; n],
    }
}

/// A full disk: the append that fails leaves nothing behind, so what is appended once space
/// is back survives a reopen (before the fix the torn record stayed and hid them).
#[test]
fn a_failed_append_on_a_full_disk_is_cut_back() {
    let Some(fs) = crate::db::testfs::Tmpfs::mount(1 << 20) else {
        return;
    };
    let path = fs.path().join("journal");
    let (mut j, _) = Journal::open(&path).unwrap();
    j.append(&set("before")).unwrap();
    let filler = fs.fill();
    // The journal's last page may still have room: append until it has none. Records of
    // 3,000 bytes overflow a page part way, so the failing write is a partial one.
    let mut kept = vec![set("before")];
    let mut failed = false;
    for i in 0..64 {
        let r = big(&format!("fill{i}"), 3000);
        match j.append(&r) {
            Ok(()) => kept.push(r),
            Err(JournalError::Io(e)) if e.kind() == std::io::ErrorKind::StorageFull => {
                failed = true;
                break;
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert!(failed, "the disk never filled up");
    assert!(!j.is_poisoned());
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        j.len,
        "the failed append left bytes behind"
    );
    std::fs::remove_file(filler).unwrap();
    for key in ["after1", "after2"] {
        j.append(&set(key)).unwrap();
        kept.push(set(key));
    }
    j.sync().unwrap();
    drop(j);
    let replayed = Journal::open(&path).unwrap().1;
    assert!(
        replayed == kept,
        "replayed {:?}, appended {:?}",
        keys(&replayed),
        keys(&kept)
    );
}

/// The keys of `records`, for failure messages that do not print whole values.
fn keys(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| match r {
            Record::Set { key, .. } | Record::SetInline { key, .. } => key.clone(),
            other => format!("{other:?}"),
        })
        .collect()
}

/// When even the cut fails, appends are refused (rather than written behind a torn
/// record) until a reset or rewrite starts a good file again.
#[test]
fn a_journal_that_cannot_cut_back_refuses_appends_until_reset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let (mut j, _) = Journal::open(&path).unwrap();
    j.append(&set("a")).unwrap();
    let writable = std::mem::replace(&mut j.file, File::open(&path).unwrap());
    // A read-only descriptor fails both the write and the cut.
    assert!(matches!(j.append(&set("b")), Err(JournalError::Io(_))));
    assert!(j.is_poisoned());
    j.file = writable;
    assert!(matches!(
        j.append(&set("c")),
        Err(JournalError::Poisoned { .. })
    ));
    j.reset(Record::base(None)).unwrap();
    j.append(&set("d")).unwrap();
    drop(j);
    let recs = Journal::read(&path).unwrap();
    assert!(matches!(recs[0], Record::Generation(_)), "{recs:?}");
    assert_eq!(recs[1..], [Record::base(None), set("d")]);
}

/// A reset needs no free space: on a full disk it empties the journal and starts a new
/// generation (a rewrite through a temp file cannot).
#[test]
fn a_reset_on_a_full_disk_empties_the_journal() {
    let Some(fs) = crate::db::testfs::Tmpfs::mount(1 << 20) else {
        return;
    };
    let path = fs.path().join("journal");
    let (mut j, _) = Journal::open(&path).unwrap();
    j.append(&big("x", 6000)).unwrap();
    j.sync().unwrap();
    let _filler = fs.fill();
    assert!(j.rewrite(&[Record::base(None)]).is_err());
    j.reset(Record::base(None)).unwrap();
    let recs = Journal::read(&path).unwrap();
    assert!(matches!(recs[0], Record::Generation(_)), "{recs:?}");
    assert_eq!(recs[1..], [Record::base(None)]);
}

/// A base record that does not fit is owed: it goes out in front of the next record, once
/// there is room.
#[test]
fn a_base_that_does_not_fit_goes_in_front_of_the_next_record() {
    let Some(fs) = crate::db::testfs::Tmpfs::mount(1 << 20) else {
        return;
    };
    let path = fs.path().join("journal");
    let (mut j, _) = Journal::open(&path).unwrap();
    // A journal of exactly one page: no slack left in its last page.
    let n = (0..4096)
        .find(|&n| MAGIC.len() + encode(&big("x", n)).unwrap().len() == 4096)
        .unwrap();
    j.append(&big("x", n)).unwrap();
    let filler = fs.fill();
    let base = Record::base(Some(ObjectId::empty_tree(gix::hash::Kind::Sha1)));
    assert!(!j.append_base(base.clone()), "the base fitted after all");
    assert_eq!(Journal::read(&path).unwrap(), vec![big("x", n)]);
    std::fs::remove_file(filler).unwrap();
    j.append(&set("z")).unwrap();
    drop(j);
    assert_eq!(
        Journal::read(&path).unwrap(),
        vec![big("x", n), base, set("z")]
    );
}

/// A rewrite that fails (the disk is full) leaves the old journal as it was and no temp
/// file; a stale temp file from a rewrite that died is removed at open.
#[test]
fn a_failed_rewrite_leaves_the_journal_and_no_temp_file() {
    let Some(fs) = crate::db::testfs::Tmpfs::mount(1 << 20) else {
        return;
    };
    let path = fs.path().join("journal");
    let (mut j, _) = Journal::open(&path).unwrap();
    j.append(&set("a")).unwrap();
    let filler = fs.fill();
    let many: Vec<Record> = (0..8).map(|i| big(&format!("k{i}"), 5000)).collect();
    assert!(j.rewrite(&many).is_err());
    assert!(!tmp_path(&path).exists(), "journal.tmp left behind");
    std::fs::remove_file(filler).unwrap();
    j.append(&set("b")).unwrap();
    drop(j);
    assert_eq!(Journal::read(&path).unwrap(), vec![set("a"), set("b")]);
    std::fs::write(tmp_path(&path), b"half a rewrite").unwrap();
    let (_, recs) = Journal::open(&path).unwrap();
    assert_eq!(recs, vec![set("a"), set("b")]);
    assert!(!tmp_path(&path).exists());
}

/// A follower reads what was appended, notices a rewrite (a new file), a reset in place
/// even once the file has grown past where it had read, and skips a torn tail until it is
/// whole.
#[test]
fn a_follower_sees_appends_resets_and_rewrites() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let mut f = Follower::new(&path);
    assert_eq!(f.poll().unwrap(), Change::Unchanged);
    let (mut j, _) = Journal::open(&path).unwrap();
    j.append(&Record::base(None)).unwrap();
    j.append(&set("a")).unwrap();
    assert_eq!(
        f.poll().unwrap(),
        Change::Replaced(vec![Record::base(None), set("a")])
    );
    assert_eq!(f.poll().unwrap(), Change::Unchanged);
    j.append(&set("b")).unwrap();
    assert_eq!(f.poll().unwrap(), Change::Appended(vec![set("b")]));
    // A torn tail: half a record is not read, the whole one is.
    let whole = encode(&set("c")).unwrap();
    let mut raw = OpenOptions::new().append(true).open(&path).unwrap();
    raw.write_all(&whole[..5]).unwrap();
    assert_eq!(f.poll().unwrap(), Change::Unchanged);
    raw.write_all(&whole[5..]).unwrap();
    assert_eq!(f.poll().unwrap(), Change::Appended(vec![set("c")]));
    drop(raw);
    let (mut j, _) = Journal::open(&path).unwrap();
    // A reset that grows back past the old length, with records of the same sizes.
    j.reset(Record::base(None)).unwrap();
    for k in ["x", "y", "z", "w"] {
        j.append(&set(k)).unwrap();
    }
    let Change::Replaced(recs) = f.poll().unwrap() else {
        panic!("a reset was not noticed");
    };
    assert_eq!(
        recs[1..],
        [Record::base(None), set("x"), set("y"), set("z"), set("w")]
    );
    j.rewrite(&[Record::base(None), set("q")]).unwrap();
    let Change::Replaced(recs) = f.poll().unwrap() else {
        panic!("a rewrite was not noticed");
    };
    assert_eq!(recs[1..], [Record::base(None), set("q")]);
    j.append(&set("r")).unwrap();
    assert_eq!(f.poll().unwrap(), Change::Appended(vec![set("r")]));
}

#[test]
fn rewrite_replaces_contents() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let (mut j, _) = Journal::open(&path).unwrap();
    j.append(&set("a")).unwrap();
    j.rewrite([&Record::base(None)]).unwrap();
    j.append(&set("z")).unwrap();
    drop(j);
    let recs = Journal::read(&path).unwrap();
    assert!(matches!(recs[0], Record::Generation(_)), "{recs:?}");
    assert_eq!(recs[1..], [Record::base(None), set("z")]);
}
