//! Permission bits and owners on a real mount: kept per path as node-local metadata, enforced
//! by the kernel under `-o allow_other,default_permissions`, persistent across remounts and
//! `kill -9`, moved by rename, dropped by delete, and `-o uid=,gid=,umask=` for paths without
//! any (issue 10).

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};

use common::Mount;

const SHARED: &[&str] = &["-o", "allow_other,default_permissions"];
/// `nobody`: the other user of these tests.
const OTHER: u32 = 65534;

/// (mode bits, uid, gid) of `path`, not following a symlink.
fn meta(path: &Path) -> (u32, u32, u32) {
    let m =
        std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    (m.mode() & 0o7777, m.uid(), m.gid())
}

/// Runs `script` with `sh -c` in `dir` as uid/gid `OTHER` with no supplementary groups.
fn as_other(dir: &Path, script: &str) -> Output {
    Command::new("setpriv")
        .args([
            &format!("--reuid={OTHER}"),
            &format!("--regid={OTHER}"),
            "--clear-groups",
            "sh",
            "-c",
            script,
        ])
        .current_dir(dir)
        .output()
        .expect("run setpriv")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A shared mount whose mountpoint other users can reach (temp dirs are 0700).
fn shared_mount(extra: &[&str]) -> Mount {
    let mut args = SHARED.to_vec();
    args.extend_from_slice(extra);
    let m = Mount::start(&args);
    open_up(&m);
    m
}

fn open_up(m: &Mount) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(m.dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod the temp dir");
}

/// The first case: `chmod 600 secret` used to succeed and leave the secret readable
/// by every user.
#[test]
fn chmod_600_shuts_another_user_out() {
    let m = shared_mount(&[]);
    m.sh_ok("echo secret > secret");
    let read = as_other(&m.mnt, "cat secret");
    assert!(
        read.status.success(),
        "0644 is readable by others: {}",
        stderr(&read)
    );
    m.sh_ok("chmod 600 secret");
    assert_eq!(meta(&m.path("secret")).0, 0o600);
    let read = as_other(&m.mnt, "cat secret");
    assert!(!read.status.success(), "another user read a 0600 file");
    assert!(
        stderr(&read).contains("Permission denied"),
        "not EACCES: {}",
        stderr(&read)
    );
    // Only the owner (or root) may change the mode back.
    let chmod = as_other(&m.mnt, "chmod 644 secret");
    assert!(!chmod.status.success(), "another user chmod-ed the file");
    // A directory's mode counts too: 0700 keeps others from what is inside.
    m.sh_ok("mkdir -p d && echo x > d/f && chmod 700 d");
    assert_eq!(meta(&m.path("d")).0, 0o700);
    assert!(!as_other(&m.mnt, "cat d/f").status.success());
    // And 0777 lets another user create in it, as its owner.
    m.sh_ok("chmod 777 d");
    let made = as_other(&m.mnt, "echo mine > d/theirs");
    assert!(made.status.success(), "create in 0777: {}", stderr(&made));
    assert_eq!(meta(&m.path("d/theirs")), (0o644, OTHER, OTHER));
}

/// New nodes get the requested mode less the umask, as on a local filesystem.
#[test]
fn mkdir_m_and_open_mode_less_umask() {
    let m = shared_mount(&[]);
    m.sh_ok("mkdir -m 700 private && mkdir -m 1777 tmp && mkdir -p a/b");
    assert_eq!(meta(&m.path("private")).0, 0o700);
    assert_eq!(meta(&m.path("tmp")).0, 0o1777);
    assert_eq!(meta(&m.path("a/b")).0, 0o755);
    m.sh_ok("umask 027 && touch f027 && mkdir d027");
    assert_eq!(meta(&m.path("f027")).0, 0o640);
    assert_eq!(meta(&m.path("d027")).0, 0o750);
    // open(2) with an explicit mode, as programs writing secrets do.
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            "import os; os.umask(0o022); \
             fd = os.open('key', os.O_CREAT | os.O_WRONLY, 0o600); os.write(fd, b'k'); \
             os.close(fd); \
             fd = os.open('tool', os.O_CREAT | os.O_WRONLY, 0o777); os.close(fd)",
        )
        .current_dir(&m.mnt)
        .output()
        .expect("python3");
    assert!(out.status.success(), "python: {}", stderr(&out));
    assert_eq!(meta(&m.path("key")).0, 0o600);
    assert_eq!(meta(&m.path("tool")).0, 0o755);
    // The one bit git keeps is the executable bit.
    m.sh_ok("echo commit > .gitdb/ctl");
    let ls = m.git(&["ls-tree", "main"]);
    assert!(ls.contains("100644 blob") && ls.contains("\tkey"), "{ls}");
    assert!(
        ls.lines()
            .any(|l| l.starts_with("100755") && l.ends_with("\ttool")),
        "{ls}"
    );
}

/// Files belong to whoever made them; only root gives one away; a group can be given to one
/// the owner belongs to.
#[test]
fn creators_own_what_they_make_and_only_root_chowns() {
    let m = shared_mount(&[]);
    m.sh_ok("mkdir -m 777 shared");
    let out = as_other(
        &m.mnt,
        "echo x > shared/f && mkdir shared/d && ln -s f shared/l",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(meta(&m.path("shared/f")), (0o644, OTHER, OTHER));
    assert_eq!(meta(&m.path("shared/d")), (0o755, OTHER, OTHER));
    assert_eq!(meta(&m.path("shared/l")), (0o777, OTHER, OTHER));
    // Not root: cannot give the file away, nor take a group it is not in.
    let out = as_other(&m.mnt, "chown 0 shared/f");
    assert!(!out.status.success(), "a user gave a file away");
    assert!(stderr(&out).contains("not permitted"), "{}", stderr(&out));
    let out = as_other(&m.mnt, "chgrp 0 shared/f");
    assert!(!out.status.success(), "a user took a group it is not in");
    // Root can.
    m.sh_ok("chown 1234:5678 shared/f && chown -h 42:43 shared/l");
    assert_eq!(meta(&m.path("shared/f")), (0o644, 1234, 5678));
    assert_eq!(meta(&m.path("shared/l")), (0o777, 42, 43));
    // A setgid directory hands its group down, and its setgid bit to new directories.
    m.sh_ok("mkdir -m 777 sg && chgrp 777 sg && chmod g+s sg && touch sg/f && mkdir sg/d");
    assert_eq!(meta(&m.path("sg/f")).2, 777);
    assert_eq!(meta(&m.path("sg/d")), (0o2755, 0, 777));
}

/// Metadata is journaled beside the repository: a remount and a `kill -9` keep it.
#[test]
fn metadata_survives_remount_and_kill_9() {
    let mut m = shared_mount(&[]);
    m.sh_ok(
        "echo s > secret && chmod 600 secret && mkdir -p etc/app && echo c > etc/app/conf \
         && chown 12:34 etc/app/conf && chmod 711 etc/app && echo commit > .gitdb/ctl \
         && echo u > uncommitted && chmod 604 uncommitted",
    );
    let want = |m: &Mount| {
        assert_eq!(meta(&m.path("secret")), (0o600, 0, 0));
        assert_eq!(meta(&m.path("etc/app/conf")), (0o644, 12, 34));
        assert_eq!(meta(&m.path("etc/app")), (0o711, 0, 0));
        assert_eq!(meta(&m.path("uncommitted")), (0o604, 0, 0));
    };
    want(&m);
    m.signal_and_wait(libc::SIGTERM);
    m.spawn(SHARED);
    want(&m);
    m.sh_ok("chmod 640 secret");
    m.signal_and_wait(libc::SIGKILL);
    m.spawn(SHARED);
    assert_eq!(meta(&m.path("secret")).0, 0o640);
    assert_eq!(meta(&m.path("etc/app/conf")), (0o644, 12, 34));
    assert!(m.repo.join("gitdb/meta").exists(), "no metadata log");
    // Not in git: the trees hold only the executable bit.
    assert_eq!(m.git(&["show", "main:secret"]), "s");
}

/// A rename moves metadata (a file, a whole directory); a delete drops it, so a new file at
/// the same name gets the defaults.
#[test]
fn rename_moves_metadata_and_delete_drops_it() {
    let m = shared_mount(&[]);
    m.sh_ok(
        "echo a > a && chmod 600 a && mv a b \
         && mkdir -p d/sub && echo f > d/sub/f && chmod 640 d/sub/f && chmod 700 d \
         && mkdir -m 711 d/empty && echo commit > .gitdb/ctl && mv d e",
    );
    assert_eq!(meta(&m.path("b")).0, 0o600);
    assert_eq!(meta(&m.path("e")).0, 0o700);
    assert_eq!(meta(&m.path("e/sub/f")).0, 0o640);
    assert_eq!(meta(&m.path("e/empty")).0, 0o711);
    // Replacing a file by a rename: the new file keeps its own metadata.
    m.sh_ok("echo n > new && chmod 604 new && mv new b");
    assert_eq!(meta(&m.path("b")).0, 0o604);
    m.sh_ok("echo plain > plain && mv plain b");
    assert_eq!(meta(&m.path("b")).0, 0o644, "a replaced file's mode stayed");
    // A directory only the mount knows (empty) moves its metadata too.
    m.sh_ok("mkdir -m 700 lone && mv lone lone2");
    assert_eq!(meta(&m.path("lone2")).0, 0o700);
    // Delete drops: a new node at the same name shows the defaults.
    m.sh_ok("rm b && touch b && rm -r e && mkdir e && rmdir lone2 && mkdir lone2");
    assert_eq!(meta(&m.path("b")).0, 0o644);
    assert_eq!(meta(&m.path("e")).0, 0o755);
    assert_eq!(meta(&m.path("lone2")).0, 0o755);
    m.sh_ok("mkdir -p e/sub && touch e/sub/f");
    assert_eq!(meta(&m.path("e/sub/f")).0, 0o644);
}

/// A rollback brings back what uncommitted deletes and renames took away, metadata included:
/// a rolled-back `rm secret` must not bring the secret back readable by all.
#[test]
fn rollback_brings_metadata_back_with_the_names() {
    let m = shared_mount(&[]);
    m.sh_ok(
        "echo s > secret && chmod 600 secret && mkdir -p d && echo f > d/f && chmod 700 d \
         && echo commit > .gitdb/ctl",
    );
    m.sh_ok("rm secret && mv d e && echo rollback > .gitdb/ctl");
    assert_eq!(meta(&m.path("secret")).0, 0o600);
    assert_eq!(meta(&m.path("d")).0, 0o700);
    assert!(!m.path("e").exists());
    // Committed, they stay done.
    m.sh_ok("mv d e && echo commit > .gitdb/ctl && echo rollback > .gitdb/ctl");
    assert_eq!(meta(&m.path("e")).0, 0o700);
    m.sh_ok("mkdir d");
    assert_eq!(meta(&m.path("d")).0, 0o755);
}

/// `-o uid=,gid=,umask=` set what a path without metadata shows: here values that reached the
/// repository without the mount (as a peer's do).
#[test]
fn uid_gid_umask_options_for_paths_without_metadata() {
    let mut m = Mount::prepare("mnt", &[]);
    for (key, args) in [("/peer/value", &[][..]), ("/peer/tool", &["--exec"][..])] {
        let out = Command::new(env!("CARGO_BIN_EXE_gitdb"))
            .arg("--repo")
            .arg(&m.repo)
            .args(["set", key, "v"])
            .args(args)
            .output()
            .expect("gitdb set");
        assert!(out.status.success(), "{}", stderr(&out));
    }
    m.spawn(&[
        "-o",
        "allow_other,default_permissions,uid=1234,gid=5678,umask=027",
    ]);
    open_up(&m);
    assert_eq!(meta(&m.path("peer")), (0o750, 1234, 5678));
    assert_eq!(meta(&m.path("peer/value")), (0o640, 1234, 5678));
    assert_eq!(meta(&m.path("peer/tool")), (0o750, 1234, 5678));
    // The root directory too; and a chmod there is kept like any other.
    assert_eq!(meta(&m.mnt), (0o750, 1234, 5678));
    // What root makes is root's, whatever the defaults.
    m.sh_ok("umask 022 && touch peer/mine");
    assert_eq!(meta(&m.path("peer/mine")), (0o644, 0, 0));
    // A user outside the group reaches nothing: the root's 0750 keeps others out.
    assert!(!as_other(&m.mnt, "cat peer/value").status.success());
}
