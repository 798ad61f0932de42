//! `gitdb-mount`: the FUSE daemon. Mounts a gitdb repository as a directory tree and stays in
//! the foreground (logs via `RUST_LOG`) until SIGINT/SIGTERM or an external `umount`; then it
//! stores what open files hold, unmounts, syncs the journal and exits 0.
//!
//! Flags and `-o` options (so an `/etc/fstab` line can say everything the flags say) are
//! parsed by [`gitdb::fuse::options`]. Called as `mount.fuse.gitdb` (a symlink in /sbin) or
//! with `--mount-helper` first, it is mount(8)'s helper instead ([`gitdb::fuse::helper`]).
//! This file only wires the pieces together.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use gitdb::GitDb;
use gitdb::fuse::helper;
use gitdb::fuse::options::MountCli;
use gitdb::fuse::{StopSignals, mount, prepare_mountpoint};
use gitdb::gossip::Gossip;

/// How long a fresh mount may take to answer its first request before the start fails.
const READY_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

fn main() -> ExitCode {
    if let Some(args) = helper::helper_call(std::env::args_os()) {
        return mount_helper(&args);
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let cli = MountCli::parse();
    // A bad flag or `-o` option is a usage error, exit 2 as clap's own; the rest exit 1.
    let plan = match cli.plan() {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("gitdb-mount: {e}");
            return ExitCode::from(2);
        }
    };
    match run(plan) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Once, to stderr (the log's own line would say it twice on a terminal).
            eprintln!("gitdb-mount: {e}");
            ExitCode::from(1)
        }
    }
}

/// As `/sbin/mount.fuse.gitdb`: start this program as the daemon, return once it serves.
fn mount_helper(args: &[std::ffi::OsString]) -> ExitCode {
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
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mount.fuse.gitdb: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(plan: gitdb::fuse::options::MountPlan) -> Result<(), Box<dyn std::error::Error>> {
    // Before the repository is opened (or created): a wrong mountpoint costs nothing.
    prepare_mountpoint(&plan.mountpoint)?;
    if let Some(parent) = plan.repo.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let db = Arc::new(GitDb::open(&plan.repo, plan.node.clone(), plan.db)?);
    // The `gitdb` client's commands reach the writer through its door until shutdown.
    let _door = (!db.is_read_only())
        .then(|| gitdb::door::serve(db.clone()))
        .transpose()?;
    let autocommit = plan.mount.autocommit;
    let signals = StopSignals::new()?;
    // Gossip starts before the mount: a port already taken fails the start, not a live mount.
    let gossip = match plan.gossip {
        Some(cfg) => Some(Gossip::start(db.clone(), cfg)?),
        None => None,
    };
    let remote = match plan.remote {
        Some(cfg) => Some(gitdb::remote::RemoteSync::start(db.clone(), cfg)?),
        None => None,
    };
    let mounted = mount(db.clone(), &plan.mountpoint, plan.mount)?;
    // systemd (`Type=notify`) starts what depends on the mount only once it answers.
    mounted.wait_answering(READY_WITHIN)?;
    gitdb::notify::ready(&format!("mounted on {}", plan.mountpoint.display()));
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
