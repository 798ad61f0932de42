//! Resources that stay bounded (issue 10): the work per unlink while a large committed
//! directory is removed, and the daemon's memory over thousands of commits. Real
//! `gitdb-mount` daemons on fresh repositories, unmounted in `Drop`.

mod common;

use common::Mount;

/// A number from the mount's `/.gitdb/status` JSON.
fn status_number(m: &Mount, field: &str) -> u64 {
    let text = std::fs::read_to_string(m.path(".gitdb/status")).expect("status");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("status is JSON");
    doc[field]
        .as_u64()
        .unwrap_or_else(|| panic!("status has no number {field}: {text}"))
}

/// `rm -rf` of a committed directory of thousands of files: the tree entries the daemon scans
/// to decide whether the directory is still visible stay a few per unlink. The old search
/// walked every tombstone already there at each unlink (O(n²): 10,072 unlinks of 100,000 in
/// 721 s); counted rather than timed, so a busy machine cannot make this flaky.
#[test]
fn rm_rf_of_a_large_committed_directory_scans_a_bounded_number_of_entries_per_unlink() {
    const N: u64 = 3000;
    let m = Mount::start(&[]);
    m.sh_ok(&format!(
        "mkdir big && i=0; while [ $i -lt {N} ]; do echo $i > big/f$i; i=$((i+1)); done"
    ));
    m.sh_ok("echo x > other && echo 'commit many' > .gitdb/ctl");
    let before = status_number(&m, "visibility_scans");
    m.sh_ok("rm -rf big");
    let scans = status_number(&m, "visibility_scans") - before;
    assert!(!m.path("big").exists());
    assert_eq!(m.sh_ok("ls"), "other\n");
    assert!(
        scans <= 8 * N,
        "{scans} tree entries scanned for {N} unlinks (old code: about N²/2)"
    );
    // The removal commits, and the head then has no trace of the directory.
    m.sh_ok("echo 'commit rm' > .gitdb/ctl");
    assert_eq!(m.git(&["ls-tree", "--name-only", "main"]), "other");
}
