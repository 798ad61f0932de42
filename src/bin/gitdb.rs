//! `gitdb`: the command-line client, for scripts and for tests that do not mount.
//! Parses flags and calls the library; every message a user sees comes from a typed error.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gitdb::db::{DiffKind, Options};
use gitdb::door::{self, exec::display_key};
use gitdb::{GitDb, NodeId, ValueMode};

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
        strategy: Option<MergeStrategy>,
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
        #[arg(default_value = "/")]
        prefix: String,
        /// How often the branch is looked at (e.g. 100ms, 2s).
        #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
        interval: std::time::Duration,
        /// After a change, wait this long for more before running COMMAND once for all.
        #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
        debounce: std::time::Duration,
        /// Exit after the first change (with COMMAND: with its exit status).
        #[arg(long)]
        once: bool,
        /// With --once: give up after this long (exit 1).
        #[arg(long, requires = "once", value_parser = humantime::parse_duration)]
        timeout: Option<std::time::Duration>,
        /// Program and arguments to run per change (no shell: use `-- sh -c '...'` for one).
        #[arg(last = true)]
        command: Vec<std::ffi::OsString>,
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
    fn command(self) -> clap::Command {
        use clap::CommandFactory;
        match self {
            Program::Gitdb => Cli::command(),
            Program::GitdbMount => gitdb::fuse::options::MountCli::command(),
        }
    }
}

/// `cmd`'s man page as `<name>.1` in `dir`, and one per subcommand as `<name>-<sub>.1`.
fn write_man_pages(cmd: clap::Command, name: &str, dir: &std::path::Path) -> std::io::Result<()> {
    let cmd = cmd.name(name.to_owned());
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    std::fs::write(dir.join(format!("{name}.1")), page)?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let sub_name = format!("{name}-{}", sub.get_name());
        write_man_pages(sub.clone(), &sub_name, dir)?;
    }
    Ok(())
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum MergeStrategy {
    Lww,
    KeepBoth,
    Custom,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp_millis()
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        // A reader that stopped reading (`gitdb log | head -1`): nothing to report.
        Err(e) if broken_pipe(e.as_ref()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gitdb: {e}");
            ExitCode::from(2)
        }
    }
}

/// Whether `e` is, or wraps, a write to a closed pipe.
fn broken_pipe(mut e: &(dyn std::error::Error + 'static)) -> bool {
    loop {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        {
            return true;
        }
        match e.source() {
            Some(inner) => e = inner,
            None => return false,
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    // Generated from the flags themselves: need no repository.
    match &cli.cmd {
        Cmd::Completions { shell, bin } => {
            let name = match bin {
                Program::Gitdb => "gitdb",
                Program::GitdbMount => "gitdb-mount",
            };
            let mut cmd = bin.command();
            let mut out = Vec::new();
            clap_complete::generate(*shell, &mut cmd, name, &mut out);
            std::io::stdout().lock().write_all(&out)?;
            return Ok(ExitCode::SUCCESS);
        }
        Cmd::Man { dir } => {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            for (bin, name) in [
                (Program::Gitdb, "gitdb"),
                (Program::GitdbMount, "gitdb-mount"),
            ] {
                write_man_pages(bin.command(), name, dir)
                    .map_err(|e| format!("writing man pages into {}: {e}", dir.display()))?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let repo = cli.repo.clone().unwrap_or_else(gitdb::defaults::repo_path);
    let node = match &cli.node_id {
        Some(id) => NodeId::new(id)?,
        None => gitdb::defaults::node_id(),
    };
    let writes = matches!(
        cli.cmd,
        Cmd::Set { .. }
            | Cmd::Rm { .. }
            | Cmd::Commit { .. }
            | Cmd::Rollback
            | Cmd::Merge { .. }
            | Cmd::Serve { .. }
    );
    // Readers never take the writer lock, so they work beside a running gitdb-mount, and
    // never create a repository: a typo in --repo is an error, not an empty store.
    if !writes && !repo.exists() {
        return Err(format!(
            "no repository at {} (commands that write create one)",
            repo.display()
        )
        .into());
    }
    let open = || {
        GitDb::open(
            &repo,
            node,
            Options {
                branch: cli.branch.clone(),
                read_only: !writes,
                create: writes,
                ..Options::default()
            },
        )
    };
    if let Cmd::Serve {
        gossip,
        autocommit,
        refresh_interval,
    } = &cli.cmd
    {
        // Checked before anything starts: a bad flag costs nothing.
        let cfg = gossip.config()?;
        let remote = gossip.remote_config()?;
        let db = std::sync::Arc::new(open()?);
        let _door = door::serve(db.clone())?;
        // Refresh and autocommit, as a mount runs them; stopped when this returns.
        let _tasks = db.start_tasks(gitdb::db::TaskOptions {
            refresh_interval: Some(*refresh_interval),
            autocommit: autocommit.0,
        })?;
        gitdb::gossip::serve_until_signalled(db, cfg, remote)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Cmd::Watch {
        prefix,
        interval,
        debounce,
        once,
        timeout,
        command,
    } = cli.cmd
    {
        let plan = gitdb::watch::WatchPlan {
            prefix: gitdb::db::Key::parse(&prefix)?,
            interval: interval.max(std::time::Duration::from_millis(1)),
            debounce,
            once,
            timeout,
            command,
        };
        let db = open()?;
        let mut out = std::io::stdout().lock();
        return Ok(match gitdb::watch::run(&db, &plan, &mut out)? {
            gitdb::watch::WatchEnd::Stopped => ExitCode::SUCCESS,
            gitdb::watch::WatchEnd::Ran(code) => {
                ExitCode::from(code.and_then(|c| u8::try_from(c).ok()).unwrap_or(1))
            }
            gitdb::watch::WatchEnd::TimedOut => {
                eprintln!(
                    "gitdb: no change under {prefix} within {}",
                    humantime::format_duration(timeout.unwrap_or_default())
                );
                ExitCode::from(1)
            }
        });
    }
    // The commands a daemon serves go to its door while one holds the repository.
    let cmd = match door_command(cli.cmd)? {
        Ok(command) => {
            let ask = door::Ask {
                branch: cli.branch.clone(),
                node: cli.node_id.clone(),
                command,
            };
            let response = door::client::run(&repo, &ask, open);
            return Ok(ExitCode::from(door::client::print(&response)?));
        }
        Err(cmd) => cmd,
    };
    let db = open()?;
    let mut out = std::io::stdout().lock();
    match cmd {
        Cmd::Show {
            rev,
            key: Some(key),
        } => match db.get_at(&rev, &key)? {
            Some(v) => out.write_all(&v)?,
            None => {
                eprintln!("gitdb: no such key at {rev}: {}", display_key(&key));
                return Ok(ExitCode::from(1));
            }
        },
        Cmd::Show { rev, key: None } => {
            let id = db.resolve_rev(&rev)?;
            let info = db.commit_info(id)?;
            writeln!(out, "commit {id}")?;
            writeln!(out, "author {}", info.author)?;
            writeln!(out)?;
            for line in info.message.lines() {
                writeln!(out, "    {line}")?;
            }
            let parent = info.parents.first().map(|p| p.to_string());
            let changes = match parent {
                Some(p) => db.diff(&p, &id.to_string())?,
                None => db
                    .list_recursive_at(&id.to_string())?
                    .into_iter()
                    .map(|key| gitdb::db::DiffEntry {
                        key,
                        change: DiffKind::Added,
                    })
                    .collect(),
            };
            writeln!(out)?;
            for c in changes {
                writeln!(out, "{} /{}", diff_letter(c.change), c.key)?;
            }
        }
        Cmd::Diff { from, to } => {
            for c in db.diff(&from, &to)? {
                writeln!(out, "{} /{}", diff_letter(c.change), c.key)?;
            }
        }
        Cmd::Merge {
            rev,
            strategy,
            merge_driver,
            driver_timeout_ms,
        } => {
            use gitdb::merge::{MergeOutcome, Strategy};
            let strategy = match (strategy, merge_driver) {
                (Some(MergeStrategy::Custom) | None, Some(cmd)) => gitdb::merge::merge_driver(
                    &cmd,
                    std::time::Duration::from_millis(driver_timeout_ms),
                ),
                (Some(MergeStrategy::Custom), None) => {
                    return Err("--strategy custom needs --merge-driver CMD".into());
                }
                (Some(_), Some(_)) => {
                    return Err("--merge-driver only goes with --strategy custom".into());
                }
                (Some(MergeStrategy::Lww), None) => Strategy::LastWriteWins,
                (Some(MergeStrategy::KeepBoth) | None, None) => Strategy::KeepBoth,
            };
            let theirs = db.resolve_rev(&rev)?;
            match gitdb::merge::merge(&db, theirs, None, &strategy, gitdb::defaults::now_ms())? {
                MergeOutcome::NoOp => writeln!(out, "noop")?,
                MergeOutcome::FastForward { to, .. } => writeln!(out, "fast-forward {to}")?,
                MergeOutcome::Superseded { to, .. } => writeln!(out, "superseded-by {to}")?,
                MergeOutcome::Merged { commit, conflicts } => {
                    writeln!(out, "merged {commit}")?;
                    for key in conflicts {
                        writeln!(out, "conflict /{key}")?;
                    }
                }
            }
        }
        _ => unreachable!("serve, and door_command took every other command"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The door's command for `cmd` (reading a `set`'s value from stdin), or `cmd` back when it
/// is not one the door serves.
fn door_command(cmd: Cmd) -> std::io::Result<Result<door::Command, Cmd>> {
    Ok(Ok(match cmd {
        Cmd::Get { key } => door::Command::Get { key },
        Cmd::Set {
            key,
            value,
            exec,
            symlink,
        } => {
            let value = match value {
                Some(v) => v.into_bytes(),
                None => {
                    let mut buf = Vec::new();
                    std::io::stdin().read_to_end(&mut buf)?;
                    buf
                }
            };
            let mode = if exec {
                ValueMode::Executable
            } else if symlink {
                ValueMode::Symlink
            } else {
                ValueMode::Regular
            };
            door::Command::Set { key, value, mode }
        }
        Cmd::Rm { key, recursive } => door::Command::Rm { key, recursive },
        Cmd::Ls { prefix, recursive } => door::Command::Ls { prefix, recursive },
        Cmd::Commit { message } => door::Command::Commit { message },
        Cmd::Rollback => door::Command::Rollback,
        Cmd::Status => door::Command::Status,
        Cmd::Metrics => door::Command::Metrics,
        Cmd::Log { n } => door::Command::Log { n: n as u64 },
        Cmd::Sync => door::Command::Sync,
        other => return Ok(Err(other)),
    }))
}

fn diff_letter(k: DiffKind) -> char {
    match k {
        DiffKind::Added => 'A',
        DiffKind::Modified => 'M',
        DiffKind::Deleted => 'D',
    }
}
