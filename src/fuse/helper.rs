//! The mount(8) helper: `mount -t fuse.gitdb REPO MNT -o OPTS`, and the same line in
//! `/etc/fstab`, run `/sbin/mount.fuse.gitdb REPO MNT -o OPTS` — with `PATH` and `HOME` removed
//! from the environment, and expecting it to return once the filesystem is mounted, with an
//! exit status that says whether it is.
//!
//! `gitdb-mount` is that helper when it is called by that name (`/sbin/mount.fuse.gitdb` a
//! symlink to it) or with `--mount-helper` first (what `scripts/mount.fuse.gitdb` does): it
//! starts *itself* as the daemon, so there is no daemon to look for on a `PATH` that is not
//! there, in a session of its own, and waits for the daemon's `READY=1` on a notify socket of
//! its own (the systemd protocol of [`crate::notify`], sent once the mount answers). A daemon
//! that exits first is reported with its exit status and the end of its log, and the helper
//! fails: mount(8) and `mount -a` report the daemon's real outcome, not the helper's.
//!
//! The daemon mounts with the source exactly as mount(8) passed it as fsname and the subtype
//! `gitdb`, so `/proc/mounts` shows the fstab line as written (`REPO MNT fuse.gitdb`) and
//! `mount -a` sees a mounted line as mounted. A call for a source already mounted at its
//! mountpoint (a live gitdb mount of the same source) succeeds without starting anything.

use std::ffi::{OsStr, OsString};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::mountpoint::{self, MountEntry};

/// How long a daemon may take to mount and answer before the helper gives up on it (it is
/// left running: it may yet come up, and killing it could lose what it was recovering).
pub const READY_WITHIN: Duration = Duration::from_secs(60);

/// What the daemon gets as `PATH` when mount(8) gave none (for the git CLI it may run).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Errors of the helper, each with what it concerns. Exit statuses follow mount(8): 1 for a
/// call that is wrong, 32 for a mount that failed.
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    #[error("usage: mount.fuse.gitdb REPO MOUNTPOINT [-sfnv] [-o OPTIONS]: {0}")]
    Usage(String),
    #[error("mountpoint {path}: {source}")]
    Mountpoint {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the daemon's log {path}: {source}")]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the readiness socket in {path}: {source}")]
    Notify {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("starting {daemon}: {source}")]
    Spawn {
        daemon: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "gitdb-mount ended ({status}) before {mountpoint} was mounted; its log ({log}) ends:\n{tail}"
    )]
    DaemonFailed {
        mountpoint: PathBuf,
        status: ExitStatus,
        log: PathBuf,
        tail: String,
    },
    #[error(
        "{mountpoint} did not answer within {waited:?}; the daemon (pid {pid}) is still \
         starting or hung: see {log}"
    )]
    NotReady {
        mountpoint: PathBuf,
        waited: Duration,
        pid: u32,
        log: PathBuf,
    },
}

impl HelperError {
    /// The exit status mount(8) expects of a helper.
    pub fn exit_code(&self) -> u8 {
        match self {
            HelperError::Usage(_) => 1,
            _ => 32,
        }
    }
}

/// A helper call as mount(8) makes it: `SOURCE MOUNTPOINT [-sfnv] [-o OPTIONS] [-t TYPE]
/// [-N NAMESPACE]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperArgs {
    pub source: OsString,
    pub mountpoint: PathBuf,
    /// `-o`, as given (mount(8) adds `rw`, or `ro`, to what fstab says).
    pub options: Option<String>,
    /// `-f`: do everything but mount.
    pub fake: bool,
    /// `-v`: say what is done.
    pub verbose: bool,
}

/// The arguments after the program name, when the program is to act as the mount helper:
/// called as `mount.fuse.gitdb` or `mount.gitdb`, or with `--mount-helper` first. None for a
/// plain `gitdb-mount` call.
pub fn helper_call(mut argv: impl Iterator<Item = OsString>) -> Option<Vec<OsString>> {
    let argv0 = argv.next()?;
    let name = Path::new(&argv0).file_name().unwrap_or_default();
    if name == "mount.fuse.gitdb" || name == "mount.gitdb" {
        return Some(argv.collect());
    }
    let rest: Vec<OsString> = argv.collect();
    (rest.first().map(OsString::as_os_str) == Some(OsStr::new("--mount-helper")))
        .then(|| rest[1..].to_vec())
}

impl HelperArgs {
    pub fn parse(args: &[OsString]) -> Result<HelperArgs, HelperError> {
        let mut positional = Vec::new();
        let mut options: Option<String> = None;
        let (mut fake, mut verbose) = (false, false);
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let text = arg.to_string_lossy();
            let mut value = |flag: &str| {
                it.next()
                    .map(|v| v.to_string_lossy().into_owned())
                    .ok_or_else(|| HelperError::Usage(format!("{flag} needs a value")))
            };
            match text.as_ref() {
                "-o" => {
                    let more = value("-o")?;
                    options = Some(match options {
                        Some(o) => format!("{o},{more}"),
                        None => more,
                    });
                }
                "-t" | "-N" => {
                    value(&text)?;
                }
                _ if text.starts_with("-o") => {
                    options = Some(text[2..].to_owned());
                }
                _ if text.starts_with('-') && text.len() > 1 => {
                    for flag in text[1..].chars() {
                        match flag {
                            'f' => fake = true,
                            'v' => verbose = true,
                            's' | 'n' => {}
                            other => {
                                return Err(HelperError::Usage(format!("unknown flag -{other}")));
                            }
                        }
                    }
                }
                _ => positional.push(arg.clone()),
            }
        }
        let [source, mountpoint]: [OsString; 2] = positional.try_into().map_err(|p: Vec<_>| {
            HelperError::Usage(format!("want REPO and MOUNTPOINT, got {} word(s)", p.len()))
        })?;
        Ok(HelperArgs {
            source,
            mountpoint: mountpoint.into(),
            options,
            fake,
            verbose,
        })
    }

    /// The options the daemon gets: the caller's, and the source as written as fsname.
    fn daemon_options(&self) -> String {
        let mut opts: Vec<String> = self
            .options
            .iter()
            .flat_map(|o| o.split(','))
            .filter(|o| !o.is_empty())
            .map(str::to_owned)
            .collect();
        if !opts.iter().any(|o| o.starts_with("fsname=")) {
            opts.push(format!("fsname={}", self.source.to_string_lossy()));
        }
        opts.join(",")
    }
}

/// Where the daemon's output goes: `$GITDB_MOUNT_LOG`, else
/// `/var/log/gitdb-mount.<mountpoint with / as _>.log`.
fn log_path(mountpoint: &Path) -> PathBuf {
    if let Some(p) = std::env::var_os("GITDB_MOUNT_LOG").filter(|p| !p.is_empty()) {
        return p.into();
    }
    let name = mountpoint.to_string_lossy().replace('/', "_");
    PathBuf::from(format!("/var/log/gitdb-mount.{name}.log"))
}

/// A live gitdb mount of `source` on `mountpoint` (the last one mounted there, answering).
fn already_mounted(source: &OsStr, mountpoint: &Path) -> Option<MountEntry> {
    let entries = mountpoint::mounts_at(mountpoint).ok()?;
    let top = mountpoint::topmost(&entries)?.clone();
    let ours = top.fstype == "fuse.gitdb" && OsStr::new(&top.fsname) == source;
    (ours && mountpoint::answers(mountpoint)).then_some(top)
}

/// Runs the helper: starts `daemon` (this program) on `args` and returns once the mount
/// answers. Messages for the operator (`-v`) go to `say`.
pub fn run(args: &HelperArgs, daemon: &Path, mut say: impl FnMut(&str)) -> Result<(), HelperError> {
    std::fs::create_dir_all(&args.mountpoint).map_err(|source| HelperError::Mountpoint {
        path: args.mountpoint.clone(),
        source,
    })?;
    let mountpoint =
        std::fs::canonicalize(&args.mountpoint).map_err(|source| HelperError::Mountpoint {
            path: args.mountpoint.clone(),
            source,
        })?;
    if already_mounted(&args.source, &mountpoint).is_some() {
        say(&format!(
            "{} is already mounted on {}",
            args.source.to_string_lossy(),
            mountpoint.display()
        ));
        return Ok(());
    }
    let log = log_path(&mountpoint);
    let mut cmd = Command::new(daemon);
    cmd.arg(&mountpoint)
        .arg("--repo")
        .arg(&args.source)
        .arg("-o")
        .arg(args.daemon_options());
    if args.fake {
        say(&format!("would run {cmd:?}"));
        return Ok(());
    }
    let notify_dir = tempfile::Builder::new()
        .prefix("gitdb-mount-helper")
        .tempdir()
        .map_err(|source| HelperError::Notify {
            path: std::env::temp_dir(),
            source,
        })?;
    let socket_path = notify_dir.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path)
        .and_then(|s| {
            s.set_read_timeout(Some(Duration::from_millis(50)))
                .map(|()| s)
        })
        .map_err(|source| HelperError::Notify {
            path: socket_path.clone(),
            source,
        })?;
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|source| HelperError::Log {
            path: log.clone(),
            source,
        })?;
    let err = out.try_clone().map_err(|source| HelperError::Log {
        path: log.clone(),
        source,
    })?;
    let start_len = out.metadata().map_or(0, |m| m.len());
    cmd.env("NOTIFY_SOCKET", &socket_path)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    if std::env::var_os("PATH").is_none() {
        cmd.env("PATH", DEFAULT_PATH);
    }
    if std::env::var_os("HOME").is_none()
        && let Some(home) = dirs::home_dir()
    {
        cmd.env("HOME", home);
    }
    // SAFETY: setsid(2) is async-signal-safe; nothing else runs between fork and exec. The
    // daemon leaves the caller's session so that it outlives the helper and its terminal.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()?;
            Ok(())
        });
    }
    say(&format!("starting {cmd:?}, log {}", log.display()));
    let mut child = cmd.spawn().map_err(|source| HelperError::Spawn {
        daemon: daemon.to_owned(),
        source,
    })?;
    wait_ready(&socket, &mut child, &mountpoint, &log, start_len)
}

/// Waits for `READY=1` from `child`, or its exit, or [`READY_WITHIN`].
fn wait_ready(
    socket: &UnixDatagram,
    child: &mut Child,
    mountpoint: &Path,
    log: &Path,
    start_len: u64,
) -> Result<(), HelperError> {
    let end = Instant::now() + READY_WITHIN;
    let mut buf = [0u8; 4096];
    loop {
        if let Ok(n) = socket.recv(&mut buf)
            && String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == "READY=1")
        {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(HelperError::DaemonFailed {
                mountpoint: mountpoint.to_owned(),
                status,
                log: log.to_owned(),
                tail: log_tail(log, start_len),
            });
        }
        if Instant::now() >= end {
            return Err(HelperError::NotReady {
                mountpoint: mountpoint.to_owned(),
                waited: READY_WITHIN,
                pid: child.id(),
                log: log.to_owned(),
            });
        }
    }
}

/// The last lines this start wrote to the log.
fn log_tail(log: &Path, from: u64) -> String {
    let text = std::fs::read(log).unwrap_or_default();
    let text = String::from_utf8_lossy(text.get(from as usize..).unwrap_or_default());
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn mount_8_calls_are_parsed() {
        let a = HelperArgs::parse(&words("/r.git /mnt/db -o rw,autocommit=5s,_netdev")).unwrap();
        assert_eq!(a.source, "/r.git");
        assert_eq!(a.mountpoint, Path::new("/mnt/db"));
        assert_eq!(a.options.as_deref(), Some("rw,autocommit=5s,_netdev"));
        assert_eq!(a.daemon_options(), "rw,autocommit=5s,_netdev,fsname=/r.git");
        let b = HelperArgs::parse(&words("-sv /r.git -t fuse.gitdb /mnt -orw -n")).unwrap();
        assert!(b.verbose && !b.fake);
        assert_eq!(b.options.as_deref(), Some("rw"));
        let c = HelperArgs::parse(&words("/r.git /mnt -o fsname=mine")).unwrap();
        assert_eq!(c.daemon_options(), "fsname=mine");
    }

    #[test]
    fn bad_calls_are_usage_errors() {
        for bad in [
            "/r.git",
            "/r.git /mnt extra",
            "/r.git /mnt -o",
            "/r.git /mnt -x",
        ] {
            let e = HelperArgs::parse(&words(bad)).unwrap_err();
            assert_eq!(e.exit_code(), 1, "{bad}: {e}");
        }
    }

    #[test]
    fn the_helper_is_told_by_its_name_or_first_flag() {
        let call = |s: &str| helper_call(words(s).into_iter());
        assert_eq!(call("/sbin/mount.fuse.gitdb a b"), Some(words("a b")));
        assert_eq!(call("gitdb-mount --mount-helper a b"), Some(words("a b")));
        assert_eq!(call("gitdb-mount /mnt --mount-helper"), None);
        assert_eq!(call("/usr/local/bin/gitdb-mount /mnt"), None);
    }
}
