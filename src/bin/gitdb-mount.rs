//! `gitdb-mount`: the FUSE daemon. Mounts a gitdb repository as a directory tree and stays in
//! the foreground (logs via `RUST_LOG`) until SIGINT/SIGTERM or an external `umount`; then it
//! stores what open files hold, unmounts, syncs the journal and exits 0.
//!
//! Flags and `-o` options (so an `/etc/fstab` line can say everything the flags say) are
//! parsed by [`gitdb::fuse::options`]; the daemon's life is [`gitdb::cli::mount`]. Called as
//! `mount.fuse.gitdb` (a symlink in /sbin) or with `--mount-helper` first, it is mount(8)'s
//! helper instead ([`gitdb::fuse::helper`]). This file only wires the pieces together.

use std::process::ExitCode;

use clap::Parser;
use gitdb::cli::mount;
use gitdb::fuse::helper;
use gitdb::fuse::options::MountCli;

fn main() -> ExitCode {
    if let Some(args) = helper::helper_call(std::env::args_os()) {
        return ExitCode::from(mount::helper_main(&args));
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    ExitCode::from(mount::main(MountCli::parse()))
}
