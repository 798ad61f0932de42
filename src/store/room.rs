//! Room on the repository's filesystem: what objects from a peer may still take, so that a
//! transfer (a hostile peer's endless blobs, a blob claiming more bytes than the disk holds)
//! can never fill the disk the node's own commits, journal and repacks need.
//!
//! Apart from writing because the rule is about the filesystem, not an object: every writer of
//! received objects asks here before it writes, and refuses with ENOSPC (what a full disk says)
//! while the disk still has its reserve, instead of finding out from a failed write once the
//! disk is full.

use std::path::Path;

use super::{Result, Store, StoreError};

/// Most a transfer leaves free on a filesystem, whatever its size: room for the node's own
/// commits and journal and a repack's new pack and index.
pub const MAX_RESERVE: u64 = 256 << 20;

/// What received objects must leave free on a filesystem of `total` bytes: 5 %, at most
/// [`MAX_RESERVE`] (a 12 MiB test disk keeps 600 KiB, a 100 GB disk 256 MiB).
pub fn reserve(total: u64) -> u64 {
    (total / 20).min(MAX_RESERVE)
}

/// Bytes free for an unprivileged writer on the filesystem of `path`, and its size; `None`
/// where the filesystem cannot say.
pub fn free_space(path: &Path) -> Option<(u64, u64)> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    let unit = wide(st.fragment_size()).max(1);
    Some((
        wide(st.blocks_available()).saturating_mul(unit),
        wide(st.blocks()).saturating_mul(unit),
    ))
}

/// A statvfs field as u64 (its C type differs between platforms).
fn wide<T: TryInto<u64>>(v: T) -> u64 {
    v.try_into().unwrap_or(u64::MAX)
}

impl Store {
    /// Fails unless writing `bytes` more (an upper bound: stored objects are compressed) leaves
    /// the filesystem its [`reserve`]. `what` names the write, for the error.
    pub fn check_room(&self, what: impl FnOnce() -> String, bytes: u64) -> Result<()> {
        let Some((free, total)) = free_space(&self.git_dir.join("objects")) else {
            return Ok(());
        };
        let reserve = reserve(total);
        if free.saturating_sub(reserve) >= bytes {
            return Ok(());
        }
        Err(StoreError::NoRoom {
            what: what(),
            need: bytes,
            free,
            reserve,
            source: std::io::Error::from_raw_os_error(libc::ENOSPC),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_grows_with_the_disk_up_to_its_bound() {
        assert_eq!(reserve(12 << 20), (12 << 20) / 20);
        assert_eq!(reserve(100 << 30), MAX_RESERVE);
    }

    #[test]
    fn a_write_larger_than_the_free_space_is_refused_with_enospc() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open_or_create(&dir.path().join("r.git"), Default::default()).unwrap();
        s.check_room(|| "a little".into(), 1 << 10).unwrap();
        let e = s.check_room(|| "a blob".into(), u64::MAX).unwrap_err();
        assert_eq!(
            e.io_error().and_then(|e| e.raw_os_error()),
            Some(libc::ENOSPC)
        );
        let msg = e.to_string();
        assert!(
            msg.contains("a blob") && msg.contains("No space left"),
            "{msg}"
        );
    }
}
