//! setattr: truncate (by handle or by path), chmod, chown and utimens, including on a
//! descriptor whose name is gone.

use std::time::Duration;

use fuser::{Errno, FileAttr, FileHandle, INodeNo, Request};

use super::attrs::value_mode;
use super::errno::errno;
use super::fscore::FsCore;
use super::open::Handle;
use super::shared::lock;

use crate::store::ValueMode;

impl FsCore {
    /// `ftruncate`/`fchmod` on a descriptor whose name is gone (see [`Self::orphan_attr`]):
    /// applied to the open file, which is all that is left of it.
    pub(super) fn orphan_setattr(
        &self,
        ino: INodeNo,
        size: Option<u64>,
        mode: Option<u32>,
    ) -> Result<(FileAttr, Duration), Errno> {
        if let Some(file) = self.s.open_file(ino.0) {
            let mut f = lock(&file);
            if let Some(mode) = mode
                && f.mode != ValueMode::Symlink
            {
                f.mode = value_mode(mode);
            }
            if let Some(size) = size {
                f.truncate(self.db(), size).map_err(|e| errno(e.errno()))?;
            }
        }
        self.orphan_attr(ino)
    }

    /// Truncates `ino`'s value: the descriptor's open file (`ftruncate`), or, by path
    /// (`truncate(2)`; O_TRUNC on a kernel without atomic O_TRUNC), the inode's open file,
    /// which every descriptor shares. Writers still open store it when they close, so the
    /// store never holds the empty middle state of `echo new > file`; with no writer open it
    /// is stored now.
    pub(super) fn truncate_file(
        &self,
        ino: u64,
        path: &str,
        fh: Option<FileHandle>,
        size: u64,
    ) -> Result<(), Errno> {
        if let Some(fh) = fh {
            return match &*self.handle(fh)? {
                Handle::Value { file, .. } => lock(file)
                    .truncate(self.db(), size)
                    .map_err(|e| errno(e.errno())),
                _ => Err(Errno::EBADF),
            };
        }
        let (pfh, file) = self.open_value(ino, false, || self.load_file(ino, path))?;
        let result = (|| {
            let mut f = lock(&file);
            f.truncate(self.db(), size).map_err(|e| errno(e.errno()))?;
            if !self.s.has_writer(ino) {
                self.flush_value(&mut f)?;
            }
            Ok(())
        })();
        let released = self.release_handle(pfh);
        result.and(released)
    }
}

/// Whether the process behind `req` belongs to group `gid`: its gid, or one of the
/// supplementary groups the kernel lists for it (FUSE requests carry only the first).
pub(super) fn caller_in_group(req: &Request, gid: u32) -> bool {
    if req.gid() == gid {
        return true;
    }
    let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", req.pid())) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .is_some_and(|g| g.split_whitespace().any(|n| n.parse() == Ok(gid)))
}
