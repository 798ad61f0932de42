//! `gitdb-mount`'s life, once its flags are parsed ([`crate::fuse::options`]): open the
//! repository, open the door, start gossip and the remotes, mount, tell systemd, serve until
//! SIGINT/SIGTERM or an external `umount`, then stop in the order that loses nothing (the mount
//! stores what open files hold, the peers' changes stop, the journal is synced). And its other
//! form, `mount.fuse.gitdb`, mount(8)'s helper ([`crate::fuse::helper`]).

use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

use super::error::{CliError, Result};
use crate::GitDb;
use crate::fuse::options::{MountCli, MountPlan};
use crate::fuse::{StopSignals, helper, mount, prepare_mountpoint};
use crate::gossip::Gossip;

/// How long a fresh mount may take to answer its first request before the start fails.
pub const READY_WITHIN: Duration = Duration::from_secs(30);

/// The daemon: runs `cli` and returns the exit code: 2 for a bad flag or `-o` option (a
/// usage error, as clap's own), 1 for any other failure, each said once on stderr (the log's
/// own line would say it twice on a terminal).
pub fn main(cli: MountCli) -> u8 {
    let plan = match cli.plan() {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("gitdb-mount: {e}");
            return 2;
        }
    };
    match run(plan) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("gitdb-mount: {e}");
            1
        }
    }
}

/// Serves `plan` until stopped (see the module docs).
pub fn run(plan: MountPlan) -> Result<()> {
    // Before the repository is opened (or created): a wrong mountpoint costs nothing.
    prepare_mountpoint(&plan.mountpoint)?;
    if let Some(parent) = plan.repo.parent() {
        std::fs::create_dir_all(parent).map_err(CliError::io(parent.display()))?;
    }
    let db = Arc::new(GitDb::open(&plan.repo, plan.node.clone(), plan.db)?);
    // The `gitdb` client's commands reach the writer through its door until shutdown.
    let _door = (!db.is_read_only())
        .then(|| crate::door::serve(db.clone()))
        .transpose()?;
    let autocommit = plan.mount.autocommit;
    let signals = StopSignals::new()?;
    // Gossip starts before the mount: a port already taken fails the start, not a live mount.
    let gossip = match plan.gossip {
        Some(cfg) => Some(Gossip::start(db.clone(), cfg)?),
        None => None,
    };
    let remote = match plan.remote {
        Some(cfg) => Some(crate::remote::RemoteSync::start(db.clone(), cfg)?),
        None => None,
    };
    let mounted = mount(db.clone(), &plan.mountpoint, plan.mount)?;
    // systemd (`Type=notify`) starts what depends on the mount only once it answers.
    mounted.wait_answering(READY_WITHIN)?;
    crate::notify::ready(&format!("mounted on {}", plan.mountpoint.display()));
    log::info!(
        "gitdb-mount: node {}, repository {}, mounted on {}{}; stop with Ctrl-C or SIGTERM",
        plan.node,
        plan.repo.display(),
        plan.mountpoint.display(),
        match autocommit {
            Some(d) => format!(", autocommit after {d:?} of quiet"),
            None => String::new(),
        }
    );
    let served = mounted.serve_until_stopped(signals);
    // The mount has stored what open files held; stop taking peers' changes last, so a merge
    // in flight finishes onto a consistent journal.
    drop(remote);
    drop(gossip);
    served?;
    db.sync()?;
    Ok(())
}

/// As `/sbin/mount.fuse.gitdb` with mount(8)'s `args`: starts this program as the daemon and
/// returns, with the helper's exit code, once it serves.
pub fn helper_main(args: &[OsString]) -> u8 {
    let result = helper::HelperArgs::parse(args).and_then(|call| {
        let daemon = std::env::current_exe().map_err(|source| helper::HelperError::Spawn {
            daemon: "/proc/self/exe".into(),
            source,
        })?;
        let verbose = call.verbose;
        helper::run(&call, &daemon, |line| {
            if verbose {
                eprintln!("mount.fuse.gitdb: {line}");
            }
        })
    });
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("mount.fuse.gitdb: {e}");
            e.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn a_bad_option_is_a_usage_error_before_anything_is_touched() {
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("mnt");
        let repo = dir.path().join("r.git");
        let cli = MountCli::try_parse_from([
            "gitdb-mount".as_ref(),
            mnt.as_os_str(),
            "--repo".as_ref(),
            repo.as_os_str(),
            "-o".as_ref(),
            "alow_other".as_ref(),
        ])
        .unwrap();
        assert_eq!(main(cli), 2);
        assert!(!mnt.exists() && !repo.exists());
    }

    #[test]
    fn a_mountpoint_that_is_a_file_fails_before_the_repository_is_made() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let repo = dir.path().join("r.git");
        let cli = MountCli::try_parse_from([
            "gitdb-mount".as_ref(),
            file.as_os_str(),
            "--repo".as_ref(),
            repo.as_os_str(),
        ])
        .unwrap();
        assert!(matches!(run(cli.plan().unwrap()), Err(CliError::Mount(_))));
        assert!(!repo.exists());
    }
}
