//! `gitdb`: the command-line client, for scripts and for tests that do not mount.
//! Only the flags live here; each command is one call into [`gitdb::cli`], which holds what
//! the commands do (and its tests). Every message a user sees comes from a typed error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use gitdb::cli::merging::StrategyFlag;
use gitdb::cli::{self, Access, Target};
use gitdb::door::Command;

#[derive(Parser)]
#[command(
    name = "gitdb",
    version,
    about = "A key-value store in a git repository"
)]
struct Cli {
    /// Repository (default: $GITDB_REPO, else gitdb/repo.git in the data directory; created if absent).
    #[arg(long, global = true)]
    repo: Option<PathBuf>,
    /// This node's id (default: $GITDB_NODE_ID or the hostname).
    #[arg(long, global = true)]
    node_id: Option<String>,
    /// Branch holding the keys.
    #[arg(long, global = true, default_value = "main")]
    branch: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print a value (exit 1 if the key does not exist).
    Get { key: String },
    /// Set a value from the argument, or from stdin when no value is given.
    Set {
        key: String,
        value: Option<String>,
        /// Store as executable (mode 100755).
        #[arg(long, conflicts_with = "symlink")]
        exec: bool,
        /// Store as a symlink whose target is the value (mode 120000).
        #[arg(long)]
        symlink: bool,
    },
    /// Delete a value; with -r, a whole prefix.
    Rm {
        key: String,
        #[arg(short = 'r', long)]
        recursive: bool,
    },
    /// List the children of a prefix (directories end in `/`); -r lists every key below it.
    Ls {
        #[arg(default_value = "/")]
        prefix: String,
        #[arg(short = 'r', long)]
        recursive: bool,
    },
    /// Commit the working layer; prints the commit id.
    Commit {
        #[arg(short = 'm', long, default_value = "gitdb commit")]
        message: String,
    },
    /// Drop every uncommitted change.
    Rollback,
    /// Recent commits, newest first.
    Log {
        #[arg(short = 'n', long, default_value_t = 20)]
        n: usize,
    },
    /// Node, head, clock and uncommitted keys, as JSON.
    Status,
    /// The node's metrics in the Prometheus text format (from the daemon while one runs).
    Metrics,
    /// Run a replication round with the daemon's peers now (needs a daemon with peers).
    Sync,
    /// Show a commit and the keys it changed; with KEY, the value of KEY at that commit.
    Show { rev: String, key: Option<String> },
    /// Keys that differ between two commits.
    Diff { from: String, to: String },
    /// Merge a commit present in the repository (e.g. fetched by `git fetch` from another node)
    /// into the branch; prints `noop`, `fast-forward <id>` or `merged <id>` and any conflicts.
    Merge {
        rev: String,
        /// Default: keep-both, or custom when --merge-driver is given.
        #[arg(long, value_enum)]
        strategy: Option<StrategyFlag>,
        /// A command in git's merge-driver form, e.g. 'cmd %O %A %B' (implies custom).
        #[arg(long)]
        merge_driver: Option<String>,
        /// How long the merge driver may run per key, in milliseconds.
        #[arg(long, default_value_t = 10_000)]
        driver_timeout_ms: u64,
    },
    /// Wait for committed changes under PREFIX (a local commit, a merge from a peer, stock
    /// git) and print each: `head <id>`, then `A|M|D /key` per changed key. Given a COMMAND,
    /// run it once per change (debounced, never two at once) with GITDB_HEAD, GITDB_PREVIOUS
    /// and GITDB_CHANGED (one key per line) in its environment.
    Watch {
        #[command(flatten)]
        flags: cli::watch::WatchFlags,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) for gitdb or,
    /// with --bin gitdb-mount, for the daemon.
    Completions {
        shell: clap_complete::Shell,
        #[arg(long, value_enum, default_value = "gitdb")]
        bin: Program,
    },
    /// Write man pages (gitdb.1, gitdb-<command>.1, gitdb-mount.1) into DIR.
    Man { dir: PathBuf },
    /// Run a headless node: gossip with peers (and their merges, and commits made by stock
    /// git) without a mount, until SIGINT/SIGTERM.
    Serve {
        /// Commit the working layer after this much quiet, as gitdb-mount's --autocommit:
        /// `off`, or a duration such as `500ms`, `5s`, `2m` (a bare number is seconds).
        #[arg(long, default_value = "off", value_parser = gitdb::durations::parse_autocommit)]
        autocommit: gitdb::durations::Autocommit,
        /// How often the branch is re-read to adopt commits made by stock git.
        #[arg(long, default_value = "500ms", value_parser = gitdb::durations::parse_duration)]
        refresh_interval: std::time::Duration,
        #[command(flatten)]
        gossip: gitdb::gossip::cli::GossipArgs,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Program {
    Gitdb,
    GitdbMount,
}

impl Program {
    fn command(self) -> (clap::Command, &'static str) {
        match self {
            Program::Gitdb => (Cli::command(), "gitdb"),
            Program::GitdbMount => (gitdb::fuse::options::MountCli::command(), "gitdb-mount"),
        }
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp_millis()
        .init();
    ExitCode::from(cli::exit_code("gitdb", run(Cli::parse()), 2))
}

fn run(cli: Cli) -> Result<u8, cli::CliError> {
    // Taken by each command that prints, not for the whole run: `gitdb serve` prints from
    // the library too.
    let out = || std::io::stdout().lock();
    // Generated from the flags themselves: need no repository.
    match cli.cmd {
        Cmd::Completions { shell, bin } => {
            let (cmd, name) = bin.command();
            return cli::docs::completions(shell, cmd, name, &mut out());
        }
        Cmd::Man { dir } => {
            let programs = [Program::Gitdb, Program::GitdbMount].map(Program::command);
            return cli::docs::man_pages(programs.into(), &dir);
        }
        _ => {}
    }
    let target = Target::new(cli.repo, cli.node_id, cli.branch)?;
    let door = |command| cli::client::run(&target, command);
    match cli.cmd {
        Cmd::Get { key } => door(Command::Get { key }),
        Cmd::Set {
            key,
            value,
            exec,
            symlink,
        } => door(Command::Set {
            key,
            value: cli::client::set_value(value, &mut std::io::stdin().lock())?,
            mode: cli::client::value_mode(exec, symlink),
        }),
        Cmd::Rm { key, recursive } => door(Command::Rm { key, recursive }),
        Cmd::Ls { prefix, recursive } => door(Command::Ls { prefix, recursive }),
        Cmd::Commit { message } => door(Command::Commit { message }),
        Cmd::Rollback => door(Command::Rollback),
        Cmd::Status => door(Command::Status),
        Cmd::Metrics => door(Command::Metrics),
        Cmd::Log { n } => door(Command::Log { n: n as u64 }),
        Cmd::Sync => door(Command::Sync),
        Cmd::Show { rev, key } => {
            let db = target.open(Access::Read)?;
            cli::history::show(
                &db,
                &rev,
                key.as_deref(),
                &mut out(),
                &mut std::io::stderr(),
            )
        }
        Cmd::Diff { from, to } => {
            cli::history::diff(&target.open(Access::Read)?, &from, &to, &mut out())
        }
        Cmd::Merge {
            rev,
            strategy,
            merge_driver,
            driver_timeout_ms,
        } => {
            let strategy = cli::merging::strategy(
                strategy,
                merge_driver.as_deref(),
                std::time::Duration::from_millis(driver_timeout_ms),
            )?;
            cli::merging::run(&target, &rev, &strategy, &mut out())
        }
        Cmd::Watch { flags } => cli::watch::run(&target, flags, &mut out()),
        Cmd::Serve {
            gossip,
            autocommit,
            refresh_interval,
        } => cli::serve::run(
            &target,
            &gossip,
            gitdb::db::TaskOptions {
                refresh_interval: Some(refresh_interval),
                autocommit: autocommit.0,
            },
        ),
        Cmd::Completions { .. } | Cmd::Man { .. } => unreachable!("answered above"),
    }
}
