//! The door's socket file: where it is, who may use it, and what a stale one means.
//!
//! - Path: `<git-dir>/gitdb/door.sock`, beside the writer lock and the journal. Only the
//!   process holding the writer lock serves it, so a socket nobody listens on is left by a
//!   killed daemon: the next daemon removes it, and a client's connect fails at once
//!   (`ECONNREFUSED`) and it goes its own way.
//! - Permissions: the socket is made `0600`, and each connection's peer uid (`SO_PEERCRED`)
//!   must be the daemon's own uid or root.
//! - A unix socket path holds at most 107 bytes; a longer one is reached through the
//!   directory's descriptor (`/proc/self/fd/N/door.sock`), on both sides.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use super::DoorError;

/// The socket's name in `<git-dir>/gitdb/`.
pub const SOCKET_NAME: &str = "door.sock";

/// The longest path `sockaddr_un` holds (108 bytes with the terminating NUL).
const SUN_PATH_MAX: usize = 107;

/// Where the door of the repository whose git directory is `git_dir` is.
pub fn socket_path(git_dir: &Path) -> PathBuf {
    git_dir.join("gitdb").join(SOCKET_NAME)
}

/// Calls `f` with `path`, or, if it is too long for a socket address, with the same file
/// reached through a descriptor of its directory (valid while `f` runs).
fn with_short_path<R>(path: &Path, f: impl FnOnce(&Path) -> io::Result<R>) -> io::Result<R> {
    if path.as_os_str().len() <= SUN_PATH_MAX {
        return f(path);
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return f(path);
    };
    let dir = File::open(dir)?;
    let short = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
    f(&short)
}

/// Connects to the door at `path`.
pub fn connect(path: &Path) -> io::Result<UnixStream> {
    with_short_path(path, |p| UnixStream::connect(p))
}

/// A bound, owner-only socket, and the identity of its file (so that only this socket's file
/// is removed at the end).
pub(super) struct Bound {
    pub listener: UnixListener,
    pub file_id: (u64, u64),
}

/// Binds the door at `path`: a socket file left there by a daemon that died is removed first;
/// one that still answers, or a file that is not a socket, is an error.
pub(super) fn bind(path: &Path) -> Result<Bound, DoorError> {
    let io_err = |source| DoorError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if connect(path).is_ok() {
                return Err(DoorError::InUse {
                    path: path.to_owned(),
                });
            }
            log::info!(
                "removing the stale door {} (nothing listens)",
                path.display()
            );
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(e)),
            }
        }
        Ok(_) => {
            return Err(DoorError::NotASocket {
                path: path.to_owned(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    let listener = with_short_path(path, |p| UnixListener::bind(p)).map_err(io_err)?;
    // Until this chmod the socket has the umask's mode; a peer of another uid that connects
    // in between is still turned away by `peer_allowed`.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_err)?;
    let m = std::fs::symlink_metadata(path).map_err(io_err)?;
    use std::os::unix::fs::MetadataExt;
    Ok(Bound {
        listener,
        file_id: (m.dev(), m.ino()),
    })
}

/// Removes the socket file at `path` if it is still the one `file_id` names.
pub(super) fn remove(path: &Path, file_id: (u64, u64)) {
    use std::os::unix::fs::MetadataExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if (m.dev(), m.ino()) == file_id => {
            if let Err(e) = std::fs::remove_file(path) {
                log::warn!("cannot remove the door {}: {e}", path.display());
            }
        }
        _ => {}
    }
}

/// The uid of the process at the other end of `stream` (`SO_PEERCRED`).
pub(super) fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt(2) on a descriptor `stream` owns, into a `ucred` of the size given.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred.uid)
}

/// Whether a peer of uid `peer` may use the door of a daemon running as `me`.
pub(super) fn peer_allowed(peer: u32, me: u32) -> bool {
    peer == me || peer == 0
}

/// This process's effective uid.
pub(super) fn my_uid() -> u32 {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_owner_and_root_are_let_in() {
        assert!(peer_allowed(1000, 1000));
        assert!(peer_allowed(0, 1000));
        assert!(!peer_allowed(1001, 1000));
        assert!(peer_allowed(0, 0));
        assert!(!peer_allowed(1000, 0));
    }

    #[test]
    fn a_socket_is_owner_only_and_a_stale_one_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SOCKET_NAME);
        let first = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // While it listens, a second bind is refused.
        assert!(matches!(bind(&path), Err(DoorError::InUse { .. })));
        // A killed daemon leaves the file without a listener: the client's connect fails at
        // once, and the next bind replaces it.
        drop(first.listener);
        assert!(path.exists());
        assert_eq!(
            connect(&path).unwrap_err().kind(),
            io::ErrorKind::ConnectionRefused
        );
        let second = bind(&path).unwrap();
        // Only its own file is removed (its inode may be the first one's again).
        remove(&path, (0, 0));
        assert!(path.exists());
        remove(&path, second.file_id);
        assert!(!path.exists());
    }

    #[test]
    fn a_file_that_is_not_a_socket_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SOCKET_NAME);
        std::fs::write(&path, b"mine").unwrap();
        assert!(matches!(bind(&path), Err(DoorError::NotASocket { .. })));
        assert_eq!(std::fs::read(&path).unwrap(), b"mine");
    }

    #[test]
    fn a_path_too_long_for_a_socket_address_still_works() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("d".repeat(60)).join("e".repeat(60));
        std::fs::create_dir_all(&deep).unwrap();
        let path = deep.join(SOCKET_NAME);
        assert!(path.as_os_str().len() > SUN_PATH_MAX);
        let bound = bind(&path).unwrap();
        assert!(
            std::fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_socket()
        );
        let _client = connect(&path).unwrap();
        let (_server, _) = bound.listener.accept().unwrap();
    }
}
