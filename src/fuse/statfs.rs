//! statfs: the block and inode figures of the filesystem that holds the repository.

use std::path::Path;

use super::fscore::FsCore;

/// What STATFS answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Statfs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
}

impl FsCore {
    /// STATFS: the figures of the filesystem holding the repository (made-up ones if it
    /// cannot be asked), and the longest name a key may have.
    pub(crate) fn statfs(&self) -> Statfs {
        let (blocks, bfree, bavail, files, ffree, bsize) = statvfs(self.db().git_dir())
            .unwrap_or((1 << 20, 1 << 19, 1 << 19, 1 << 20, 1 << 19, 4096));
        Statfs {
            blocks,
            bfree,
            bavail,
            files,
            ffree,
            bsize,
            namelen: crate::db::key::MAX_COMPONENT_LEN as u32,
            frsize: bsize,
        }
    }
}

/// Block and inode figures of the filesystem holding the repository.
pub(super) fn statvfs(path: &Path) -> Option<(u64, u64, u64, u64, u64, u32)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    Some((
        st.f_blocks,
        st.f_bfree,
        st.f_bavail,
        st.f_files,
        st.f_ffree,
        st.f_bsize as u32,
    ))
}
