//! The binaries' logic, in the library: what each command of `gitdb` (the client) and
//! `gitdb-mount` (the daemon) does once its flags are parsed, so that `src/bin/` holds only the
//! clap structs and a call per command (as mountpoint-s3 keeps its `cli.rs` in the library),
//! and so that the logic gets unit tests, which a binary cannot have.
//!
//! This module is at the binaries' level, the top of the stack, and calls down through the
//! layers' doors: it names neither the store nor merge, but reaches the store through db and
//! merge through gossip (`gitdb merge` calls [`crate::gossip::merging`], see [`merging`]), since db sits below
//! merge and a merge verb on the db would be a call up the layers.
//!
//! One concept per file:
//! - [`error`]: [`CliError`], and how a result ends the process (exit codes, a closed pipe).
//! - [`target`]: the repository, node and branch a command works on, and opening it for
//!   reading or writing (readers never create a repository nor take the writer lock).
//! - [`client`]: the commands a daemon serves through its door (get, set, rm, ls, commit,
//!   rollback, status, metrics, log, sync), run through the door or on the repository.
//! - [`history`]: `show` and `diff`, read straight from the repository.
//! - [`merging`]: `gitdb merge`: the strategy the flags ask for, the merge, its report.
//! - [`watch`]: `gitdb watch`: the plan from the flags, and how a watch ends.
//! - [`serve`]: `gitdb serve`, a headless node.
//! - [`mount`]: `gitdb-mount`'s life (open, door, gossip, remote, mount, serve, stop) and
//!   its `mount.fuse.gitdb` helper form.
//! - [`docs`]: shell completions and man pages, generated from the clap structs.
//!
//! Repository and node-id resolution, shared with `gitdb-mount`'s option parsing, is
//! [`crate::defaults::resolve`].

pub mod client;
pub mod docs;
pub mod error;
pub mod history;
pub mod merging;
pub mod mount;
pub mod serve;
pub mod target;
pub mod watch;

pub use error::{CliError, exit_code};
pub use target::{Access, Target};
