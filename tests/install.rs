//! `scripts/install.sh` into a staging tree (`--destdir`), from the binaries under test: what
//! an operator gets — binaries, the mount helper symlink, man pages and completions generated
//! from the flags, the systemd unit pointing at the installed daemon.

use std::path::Path;
use std::process::Command;

#[test]
fn install_puts_every_piece_where_the_system_looks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stage = dir.path();
    let bins = Path::new(env!("CARGO_BIN_EXE_gitdb"))
        .parent()
        .expect("bin dir");
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/install.sh"))
        .arg("--bin-dir")
        .arg(bins)
        .arg("--destdir")
        .arg(stage)
        .args(["--prefix", "/opt/gitdb"])
        .output()
        .expect("run install.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = stage.join("opt/gitdb");
    let version = Command::new(root.join("bin/gitdb"))
        .arg("--version")
        .output()
        .expect("installed gitdb");
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("gitdb "));
    assert_eq!(
        std::fs::read_link(stage.join("sbin/mount.fuse.gitdb")).expect("helper symlink"),
        Path::new("/opt/gitdb/bin/gitdb-mount")
    );
    for (page, title) in [
        ("gitdb.1", ".TH gitdb 1"),
        ("gitdb-watch.1", ".TH gitdb-watch 1"),
        ("gitdb-mount.1", ".TH gitdb-mount 1"),
    ] {
        let text = std::fs::read_to_string(root.join("share/man/man1").join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(
            text.contains(title),
            "{page}: {}",
            &text[..200.min(text.len())]
        );
    }
    for b in ["gitdb", "gitdb-mount"] {
        let script = root.join("share/bash-completion/completions").join(b);
        let text = std::fs::read_to_string(&script).expect("bash completion");
        // Completes the installed command's own name.
        assert!(text.contains(&format!(" {b}\n")), "{b}: {text}");
        let syntax = Command::new("bash")
            .arg("-n")
            .arg(&script)
            .status()
            .expect("bash -n");
        assert!(
            syntax.success(),
            "{b}: bash cannot parse its completion script"
        );
        assert!(root.join(format!("share/zsh/site-functions/_{b}")).exists());
        assert!(
            root.join(format!("share/fish/vendor_completions.d/{b}.fish"))
                .exists()
        );
    }
    let unit = std::fs::read_to_string(stage.join("etc/systemd/system/gitdb-mount@.service"))
        .expect("unit");
    assert!(
        unit.contains("ExecStart=/opt/gitdb/bin/gitdb-mount "),
        "{unit}"
    );
    assert!(root.join("share/doc/gitdb/README.md").exists());
}
