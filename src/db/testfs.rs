//! Test helper: a small tmpfs of its own, to run the journal and the store on a disk that
//! fills up. Mounted in a fresh temp directory (tests run in parallel), unmounted in `Drop`
//! even when the test panics. Needs root, as the test machines run; elsewhere the tests that
//! use it say so and pass without running.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// A tmpfs of `size` bytes (rounded up to pages by the kernel), or `None` when not root.
    pub fn mount(size: u64) -> Option<Tmpfs> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: mounting a tmpfs needs root");
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir for the tmpfs");
        let target = CString::new(dir.path().as_os_str().as_bytes()).expect("path without NUL");
        let options = CString::new(format!("size={size},mode=0755")).expect("options");
        // SAFETY: every pointer is a NUL-terminated string that outlives the call.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                options.as_ptr().cast(),
            )
        };
        assert_eq!(
            rc,
            0,
            "mount tmpfs on {}: {}",
            dir.path().display(),
            std::io::Error::last_os_error()
        );
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
                    Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                    Err(e) => panic!("filling {}: {e}", path.display()),
                }
            }
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let Ok(target) = CString::new(self.dir.path().as_os_str().as_bytes()) else {
            return;
        };
        // SAFETY: `target` is a NUL-terminated path; a lazy detach if something still holds it.
        unsafe {
            if libc::umount2(target.as_ptr(), 0) != 0 {
                libc::umount2(target.as_ptr(), libc::MNT_DETACH);
            }
        }
    }
}
