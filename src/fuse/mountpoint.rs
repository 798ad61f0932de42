//! The mountpoint's own life: what is mounted there before we mount, and getting off it.
//!
//! A daemon killed with `kill -9` leaves its mount behind, dead ("Transport endpoint is not
//! connected"), and the kernel may keep answering `stat` of its root from cache for a minute;
//! a live mount of someone else's may sit where we were told to mount. Both are found here from
//! `/proc/self/mountinfo` (escapes decoded) and a `statfs` probe, before the repository is
//! even opened, so a wrong mountpoint costs nothing and a restart after a crash mounts once.

use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use super::background::MountError;

/// How long a mount at the mountpoint may take to answer `statfs` before it counts as hung. A
/// live daemon answers in microseconds; one that is hung (or stuck in a long callback with a
/// single worker) may never answer, and the start must not wait for it forever.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// At most this many dead mounts are detached from one mountpoint: more means that detaching
/// is not taking effect, and looping on would never end. (Before this check existed, a 60-round
/// crash run stacked 51.)
const MAX_DETACH: usize = 1024;

/// Makes `path` free to mount on: detaches every dead FUSE mount there (a killed daemon leaves
/// "Transport endpoint is not connected"), topmost first, and refuses a FUSE mount that is
/// alive. Returns whether it detached any.
///
/// A dead mount is told by its entry in `/proc/self/mountinfo` and by asking its connection,
/// never by `stat`: the kernel answers `stat` of the root from its attribute cache (60 s TTL)
/// without asking the daemon, so right after a crash the dead mount looks alive and the new
/// one would be stacked on it (or fail later with ENOTCONN). `statfs(2)` always sends
/// FUSE_STATFS to the daemon: ENOTCONN (or ECONNABORTED after an abort) means nobody is behind
/// the mount any more.
///
/// - A live FUSE mount (it answers) is [`MountError::AlreadyMounted`]: stacking on it would
///   hide it and its daemon would keep running unseen.
/// - A FUSE mount that does not answer within [`PROBE_TIMEOUT`] is
///   [`MountError::Unresponsive`]: its daemon is alive but hung (or very busy). It is not
///   aborted here: that would fail every request of the processes using it, and it may yet
///   recover. Its `/sys/fs/fuse/connections/N/waiting` count is logged, and the error says how
///   to abort it (`echo 1 > .../N/abort`, needs fusectl mounted there) or detach it. The probe
///   thread stays blocked until the daemon answers or the process exits.
/// - Something other than FUSE on top (a bind mount, a tmpfs volume) is mounted over as
///   before: that is a normal setup, and it cannot be a dead daemon.
/// - Root probing another user's mount without `allow_other` gets a made-up answer from the
///   kernel (it never asks such a daemon), so that mount counts as live and is refused: safe,
///   never stacked on.
///
/// If `/proc/self/mountinfo` cannot be read (no /proc in a chroot), nothing is checked and the
/// mount goes ahead as it always did, with a warning.
pub fn clean_stale_mount(path: &Path) -> Result<bool, MountError> {
    let path = absolute(path);
    let mut detached = 0usize;
    loop {
        let entries = match mounts_at(&path) {
            Ok(entries) => entries,
            Err(e) => {
                log::warn!(
                    "reading {MOUNTINFO}: {e}; not checking {} for a stale or live mount",
                    path.display()
                );
                return Ok(detached > 0);
            }
        };
        let Some(top) = topmost(&entries) else {
            return Ok(detached > 0);
        };
        if !top.is_fuse() {
            log::debug!(
                "{} is a {} mount ({}): mounting over it",
                path.display(),
                top.fstype,
                top.fsname
            );
            return Ok(detached > 0);
        }
        if detached >= MAX_DETACH {
            return Err(MountError::Unmount {
                path,
                source: std::io::Error::other(format!(
                    "still a dead mount after detaching {detached}"
                )),
            });
        }
        match probe(&path, PROBE_TIMEOUT)? {
            Some(Ok(())) => {
                return Err(MountError::AlreadyMounted {
                    path,
                    fstype: top.fstype.clone(),
                    fsname: top.fsname.clone(),
                });
            }
            Some(Err(e))
                if matches!(e.raw_os_error(), Some(libc::ENOTCONN | libc::ECONNABORTED)) =>
            {
                log::warn!(
                    "{} is a stale FUSE mount ({} {}, its daemon died: {e}): detaching it \
                     (umount -l)",
                    path.display(),
                    top.fstype,
                    top.fsname
                );
                lazy_unmount(&path).map_err(|source| MountError::Unmount {
                    path: path.clone(),
                    source,
                })?;
                detached += 1;
            }
            // The daemon answered with an error, or the path cannot be reached: either way it is
            // nothing to detach, and nothing to mount over blindly.
            Some(Err(source)) => return Err(MountError::Mountpoint { path, source }),
            None => {
                let connection = top.connection();
                let waiting = std::fs::read_to_string(format!(
                    "/sys/fs/fuse/connections/{connection}/waiting"
                ))
                .map_or_else(
                    |_| "unknown (fusectl not mounted)".to_owned(),
                    |w| w.trim().to_owned(),
                );
                log::warn!(
                    "{} ({} {}) did not answer statfs within {PROBE_TIMEOUT:?}; FUSE connection \
                     {connection}, requests waiting: {waiting}",
                    path.display(),
                    top.fstype,
                    top.fsname
                );
                return Err(MountError::Unresponsive {
                    path,
                    fstype: top.fstype.clone(),
                    fsname: top.fsname.clone(),
                    connection,
                    waited: PROBE_TIMEOUT,
                });
            }
        }
    }
}

/// `path` made absolute the way the kernel writes mount points: symlinks resolved. A dead
/// mount does not stop this (realpath reads links, and a FUSE directory has none to ask the
/// daemon about); a path that does not exist yet keeps its last component.
pub(super) fn absolute(path: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    if let (Some(parent), Some(name)) = (path.parent(), path.file_name())
        && let Ok(parent) = std::fs::canonicalize(if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        })
    {
        return parent.join(name);
    }
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// `statfs(2)` on `path` from a helper thread: the result, or None if it took longer than
/// `timeout` (the thread is left blocked in the kernel; it ends when the daemon answers, the
/// connection is aborted, or this process exits).
fn probe(path: &Path, timeout: Duration) -> Result<Option<std::io::Result<()>>, MountError> {
    let (tx, rx) = mpsc::channel();
    let owned = path.to_owned();
    std::thread::Builder::new()
        .name("gitdb-probe".into())
        .spawn(move || {
            let _ = tx.send(
                nix::sys::statfs::statfs(&owned)
                    .map(drop)
                    .map_err(std::io::Error::from),
            );
        })
        .map_err(MountError::Thread)?;
    Ok(rx.recv_timeout(timeout).ok())
}

/// Whether the mount at `path` answers `statfs` (within [`PROBE_TIMEOUT`]).
pub(super) fn answers(path: &Path) -> bool {
    matches!(probe(path, PROBE_TIMEOUT), Ok(Some(Ok(()))))
}

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// One line of `/proc/self/mountinfo`, the fields used here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MountEntry {
    id: u64,
    parent: u64,
    /// `st_dev` of the mount, as (major, minor).
    dev: (u32, u32),
    mount_point: PathBuf,
    /// `fuse`, `fuse.gitdb` (with a subtype), `tmpfs`, ...
    pub(super) fstype: String,
    /// The source column: the repository (or the fstab line's source) for ours.
    pub(super) fsname: String,
}

impl MountEntry {
    /// Parses one line: `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE
    /// SOURCE SUPEROPTIONS` (proc(5)). None for a line not in that shape: the kernel writes
    /// it, but a line this code does not understand must not stop a mount.
    fn parse(line: &[u8]) -> Option<MountEntry> {
        let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        let text = |f: &[u8]| std::str::from_utf8(f).ok().map(str::to_owned);
        let number = |f: &[u8]| text(f)?.parse::<u64>().ok();
        let (major, minor) = text(fields.get(2)?)?
            .split_once(':')
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))?;
        // Optional fields (shared:N, master:N, ...) end at a lone "-".
        let dash = 6 + fields.get(6..)?.iter().position(|f| *f == b"-")?;
        let lossy = |f: &[u8]| String::from_utf8_lossy(&unescape(f)).into_owned();
        Some(MountEntry {
            id: number(fields.first()?)?,
            parent: number(fields.get(1)?)?,
            dev: (major, minor),
            mount_point: PathBuf::from(std::ffi::OsString::from_vec(unescape(fields.get(4)?))),
            fstype: lossy(fields.get(dash + 1)?),
            fsname: lossy(fields.get(dash + 2)?),
        })
    }

    fn is_fuse(&self) -> bool {
        ["fuse", "fuseblk"].iter().any(|t| {
            self.fstype == *t
                || self
                    .fstype
                    .strip_prefix(t)
                    .is_some_and(|sub| sub.starts_with('.'))
        })
    }

    /// The connection's name under `/sys/fs/fuse/connections/`: the kernel's dev_t of the
    /// mount, `MKDEV(major, minor)` (FUSE mounts have major 0, so it is the minor).
    fn connection(&self) -> u32 {
        (self.dev.0 << 20) | self.dev.1
    }
}

/// Undoes the kernel's escaping of mountinfo fields: space, tab, newline and backslash are
/// written as `\040`, `\011`, `\012`, `\134` (three octal digits). A backslash not followed
/// by three octal digits of a byte is kept as it is.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && let Some(digits) = field.get(i + 1..i + 4)
            && digits.iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let value = digits
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(field[i]);
        i += 1;
    }
    out
}

/// The mounts whose mount point is exactly `path` (absolute, symlinks resolved), in the
/// kernel's order. Read as bytes: one mount point that is not UTF-8 must not hide the others.
pub(super) fn mounts_at(path: &Path) -> std::io::Result<Vec<MountEntry>> {
    let info = std::fs::read(MOUNTINFO)?;
    Ok(info
        .split(|&b| b == b'\n')
        .filter_map(MountEntry::parse)
        .filter(|e| e.mount_point == path)
        .collect())
}

/// Of mounts stacked on one mount point, the one on top: the one no other is mounted on.
/// (The kernel lists mounts in the order they were made, so the last such one if several.)
pub(super) fn topmost(entries: &[MountEntry]) -> Option<&MountEntry> {
    entries
        .iter()
        .rev()
        .find(|e| !entries.iter().any(|o| o.parent == e.id && o.id != e.id))
        .or(entries.last())
}

/// Whether `path` is a mountpoint (per /proc/self/mountinfo, escapes decoded: a mountpoint
/// with a space in its name is written `\040` there).
pub(super) fn is_mounted(path: &Path) -> bool {
    mounts_at(path).is_ok_and(|m| !m.is_empty())
}

/// `umount`: fails with EBUSY while something on the mount is open.
pub(super) fn unmount(path: &Path) -> std::io::Result<()> {
    umount(path, false)
}

/// `umount -l`: detach now, let the kernel finish when the last user leaves.
pub(super) fn lazy_unmount(path: &Path) -> std::io::Result<()> {
    umount(path, true)
}

/// umount2(2), and for a user who is not root (the kernel answers EPERM however the mount
/// came to be) the setuid `fusermount3 -u` that mounted it, as libfuse does: without it a
/// non-root daemon's clean stop left its mount behind, dead.
fn umount(path: &Path, lazy: bool) -> std::io::Result<()> {
    use nix::mount::MntFlags;
    let flags = if lazy {
        MntFlags::MNT_DETACH
    } else {
        MntFlags::empty()
    };
    match nix::mount::umount2(path, flags) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EPERM) if !nix::unistd::geteuid().is_root() => {
            fusermount_unmount(path, lazy)
        }
        Err(e) => Err(e.into()),
    }
}

/// Where `fusermount3` may be: a daemon started by mount(8) or systemd may have no PATH.
const FUSERMOUNT: [&str; 4] = [
    "fusermount3",
    "/usr/bin/fusermount3",
    "/bin/fusermount3",
    "/usr/local/bin/fusermount3",
];

fn fusermount_unmount(path: &Path, lazy: bool) -> std::io::Result<()> {
    let mut last = std::io::Error::from(std::io::ErrorKind::NotFound);
    for bin in FUSERMOUNT {
        let mut cmd = std::process::Command::new(bin);
        cmd.arg(if lazy { "-uz" } else { "-u" }).arg("--").arg(path);
        let out = match cmd.stdin(std::process::Stdio::null()).output() {
            Ok(out) => out,
            Err(e) => {
                last = e;
                continue;
            }
        };
        if out.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        // The shutdown waits on EBUSY (files still open) exactly as it does for umount2.
        if stderr.contains("busy") {
            return Err(std::io::Error::from_raw_os_error(libc::EBUSY));
        }
        return Err(std::io::Error::other(format!(
            "{bin} -u: {}",
            stderr.trim()
        )));
    }
    Err(std::io::Error::new(
        last.kind(),
        format!("not root, and no fusermount3 to unmount with (install fuse3): {last}"),
    ))
}

/// Makes `path` ready to mount on: dead FUSE mounts there detached, a live one refused (see
/// [`clean_stale_mount`]), the directory created if absent. A daemon calls it before it opens
/// (or creates) the repository, so a wrong mountpoint costs nothing.
pub fn prepare_mountpoint(path: &Path) -> Result<(), MountError> {
    clean_stale_mount(path)?;
    let io = |source| MountError::Mountpoint {
        path: path.to_owned(),
        source,
    };
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(MountError::NotADirectory {
            path: path.to_owned(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(path).map_err(io)
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape(br"/tmp/m\040n"), b"/tmp/m n");
        assert_eq!(unescape(br"a\011b\012c\134d"), b"a\tb\nc\\d");
        assert_eq!(unescape(br"\040\040"), b"  ");
        // Not an escape the kernel writes: kept as it is.
        assert_eq!(unescape(br"a\b"), br"a\b");
        assert_eq!(unescape(br"a\04"), br"a\04");
        assert_eq!(unescape(br"a\"), br"a\");
        assert_eq!(unescape(br"a\089"), br"a\089");
        // Three octal digits above a byte (0o777).
        assert_eq!(unescape(br"a\777"), br"a\777");
        // Bytes that are not UTF-8 pass through.
        assert_eq!(unescape(b"\xff\\040"), b"\xff ");
    }

    #[test]
    fn mountinfo_lines_are_parsed() {
        let line = br"45 27 0:40 / /tmp/m\040n rw,nosuid,nodev,relatime shared:12 master:3 - fuse.gitdb gitdb:/tmp/r\040x.git rw,user_id=0,group_id=0";
        let e = MountEntry::parse(line).expect("parsed");
        assert_eq!(
            e,
            MountEntry {
                id: 45,
                parent: 27,
                dev: (0, 40),
                mount_point: PathBuf::from("/tmp/m n"),
                fstype: "fuse.gitdb".into(),
                fsname: "gitdb:/tmp/r x.git".into(),
            }
        );
        assert!(e.is_fuse());
        assert_eq!(e.connection(), 40);
        // No optional fields.
        let e = MountEntry::parse(b"1 0 8:2 / / rw - ext4 /dev/sda2 rw").expect("parsed");
        assert_eq!(
            (e.fstype.as_str(), e.fsname.as_str()),
            ("ext4", "/dev/sda2")
        );
        assert!(!e.is_fuse());
        assert_eq!(e.connection(), (8 << 20) | 2);
        for fstype in ["fuse", "fuseblk", "fuse.sshfs"] {
            let line = format!("2 1 0:5 / /m rw - {fstype} x rw");
            assert!(
                MountEntry::parse(line.as_bytes()).unwrap().is_fuse(),
                "{fstype}"
            );
        }
        for fstype in ["fusectl", "fuseblkx", "tmpfs"] {
            let line = format!("2 1 0:5 / /m rw - {fstype} x rw");
            assert!(
                !MountEntry::parse(line.as_bytes()).unwrap().is_fuse(),
                "{fstype}"
            );
        }
        // Lines not in the documented shape are skipped, not a panic.
        for bad in [
            &b""[..],
            b"garbage",
            b"1 0 8:2 / / rw ext4 /dev/sda2 rw",
            b"x 0 8:2 / / rw - ext4 /dev/sda2 rw",
            b"1 0 82 / / rw - ext4 /dev/sda2 rw",
            b"1 0 8:2 / / rw -",
        ] {
            assert_eq!(
                MountEntry::parse(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn the_topmost_of_stacked_mounts_is_the_one_nothing_is_mounted_on() {
        let entry = |id, parent| MountEntry {
            id,
            parent,
            dev: (0, id as u32),
            mount_point: "/m".into(),
            fstype: "fuse".into(),
            fsname: "gitdb:/r".into(),
        };
        assert_eq!(topmost(&[]), None);
        // Listed in mount order, and also out of it (a propagated or moved mount).
        let stack = [entry(10, 1), entry(11, 10), entry(12, 11)];
        assert_eq!(topmost(&stack).map(|e| e.id), Some(12));
        let shuffled = [entry(12, 11), entry(10, 1), entry(11, 10)];
        assert_eq!(topmost(&shuffled).map(|e| e.id), Some(12));
    }

    #[test]
    fn no_mount_is_seen_where_there_is_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plain = dir.path().join("with space");
        std::fs::create_dir(&plain).expect("mkdir");
        assert!(!is_mounted(&plain));
        assert!(!clean_stale_mount(&plain).expect("nothing to clean"));
        // Symlinks are resolved as the kernel's mount table has them, also for a path that
        // does not exist yet.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&plain, &link).expect("symlink");
        let real = std::fs::canonicalize(&plain).expect("canonicalize");
        assert_eq!(absolute(&link), real);
        assert_eq!(absolute(&link.join("new")), real.join("new"));
        // What this very code reads from is a mount.
        assert!(is_mounted(Path::new("/proc")));
    }
}
