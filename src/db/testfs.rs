//! Test helper: a small tmpfs of its own, to run the journal and the store on a disk that
//! fills up. Mounted in a fresh temp directory (tests run in parallel), unmounted in `Drop`
//! even when the test panics. Needs root, as the test machines run; elsewhere the tests that
//! use it say so and pass without running.

use std::io::Write;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// A tmpfs of `size` bytes (rounded up to pages by the kernel), or `None` when not root.
    pub fn mount(size: u64) -> Option<Tmpfs> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: mounting a tmpfs needs root");
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir for the tmpfs");
        let options = format!("size={size},mode=0755");
        if let Err(e) = nix::mount::mount(
            Some("tmpfs"),
            dir.path(),
            Some("tmpfs"),
            MsFlags::empty(),
            Some(options.as_str()),
        ) {
            panic!("mount tmpfs on {}: {e}", dir.path().display());
        }
        Some(Tmpfs { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the filesystem with a file until a write fails with ENOSPC; returns the file,
    /// whose removal gives the space back. What is left is less than a page.
    pub fn fill(&self) -> PathBuf {
        let path = self.path().join("filler");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("filler");
        for chunk in [64 << 10, 4096, 512, 1] {
            let buf = vec![0x5a; chunk];
            loop {
                match f.write(&buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                    Err(e) => panic!("filling {}: {e}", path.display()),
                }
            }
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // A lazy detach if something still holds it.
        if nix::mount::umount2(self.dir.path(), MntFlags::empty()).is_err() {
            let _ = nix::mount::umount2(self.dir.path(), MntFlags::MNT_DETACH);
        }
    }
}
