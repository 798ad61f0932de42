//! `gitdb watch` as a config user runs it: a real `gitdb` process beside a real mount (or a
//! headless node fed by a peer), woken by commits through `.gitdb/ctl`, by stock git pushing
//! to the repository and by a merge from a peer, running a shell command per change.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::serve::{Serve, stock_git_commit};
use common::{DEADLINE, Mount, wait_for};

/// A running `gitdb watch`: its stdout lines as they come, its stderr kept in a file, killed
/// on drop.
struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: PathBuf,
}

impl Watch {
    fn start(dir: &Path, repo: &Path, args: &[&str]) -> Watch {
        let stderr = dir.join(format!("watch-{}.err", std::process::id()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_gitdb"))
            .arg("--repo")
            .arg(repo)
            .arg("watch")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("spawn gitdb watch");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let w = Watch {
            child,
            lines,
            stderr,
        };
        // Changes count from the head it read at its start: wait until it has.
        wait_for("the watch to start following", || {
            w.stderr_text().contains("following")
        });
        w
    }

    fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The next change it printed: the head, and the `X /key` lines after it.
    fn next_change(&self) -> (String, Vec<String>) {
        let head = self
            .lines
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|_| panic!("no change printed; stderr: {}", self.stderr_text()));
        let head = head
            .strip_prefix("head ")
            .unwrap_or_else(|| panic!("not a head line: {head:?}"))
            .to_owned();
        let mut keys = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(300)) {
            if let Some(next) = line.strip_prefix("head ") {
                panic!("two changes where one was expected: {head} then {next}");
            }
            keys.push(line);
        }
        (head, keys)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rev_parse(repo: &Path) -> String {
    common::git(repo, &["rev-parse", "main"], None)
        .trim()
        .to_owned()
}

#[test]
fn a_watch_beside_a_mount_sees_its_commits_and_stock_git_pushes_and_nothing_else() {
    let m = Mount::start(&[]);
    m.sh_ok("mkdir -p other && echo 1 > other/x && echo commit > .gitdb/ctl");
    let w = Watch::start(m.dir.path(), &m.repo, &["/app"]);

    // A change outside the prefix wakes nothing; the next one under it is the one printed,
    // with only its own keys.
    m.sh_ok("echo 2 > other/x && echo commit > .gitdb/ctl");
    m.sh_ok("mkdir -p app && echo 8080 > app/port && echo commit > .gitdb/ctl");
    let (head, keys) = w.next_change();
    assert_eq!(head, rev_parse(&m.repo));
    assert_eq!(keys, ["A /app/port"]);

    // Written but not committed: not a change of the committed state.
    m.sh_ok("echo 9090 > app/port");
    m.sh_ok("echo rollback > .gitdb/ctl");

    // Stock git, pushing to the repository the mount serves.
    stock_git_commit(&m.repo, &m.dir.path().join("clone"), "app/host", "db1");
    let (head, keys) = w.next_change();
    assert_eq!(head, rev_parse(&m.repo));
    assert_eq!(keys, ["A /app/host"]);
}

#[test]
fn a_command_runs_once_per_burst_never_twice_at_once_with_the_change_in_its_environment() {
    let m = Mount::start(&[]);
    let runs = m.dir.path().join("runs");
    let script = format!(
        "echo \"start $GITDB_HEAD $(echo $GITDB_CHANGED)\" >> '{r}'; sleep 0.5; echo end >> '{r}'",
        r = runs.display()
    );
    let w = Watch::start(
        m.dir.path(),
        &m.repo,
        &["/app", "--debounce", "2s", "--", "sh", "-c", &script],
    );
    let read = || std::fs::read_to_string(&runs).unwrap_or_default();
    // Three commits in a burst: one run, for the last head, naming every key.
    for (key, v) in [("a", "1"), ("b", "2"), ("a", "3")] {
        m.sh_ok(&format!(
            "mkdir -p app && echo {v} > app/{key} && echo commit > .gitdb/ctl"
        ));
    }
    let burst_head = rev_parse(&m.repo);
    wait_for("the burst's run to end", || read().contains("end"));
    assert_eq!(read(), format!("start {burst_head} /app/a /app/b\nend\n"));

    // Commits while the command runs: it is not started again until it has ended.
    m.sh_ok("echo 4 > app/a && echo commit > .gitdb/ctl");
    wait_for("the second run to start", || {
        read().matches("start").count() == 2
    });
    m.sh_ok("echo 5 > app/b && echo commit > .gitdb/ctl");
    let last = rev_parse(&m.repo);
    wait_for("a run for the last head to end", || {
        read().contains(&format!("start {last}")) && read().ends_with("end\n")
    });
    let text = read();
    let lines: Vec<&str> = text.lines().collect();
    for pair in lines.chunks(2) {
        assert!(
            pair.len() == 2 && pair[0].starts_with("start") && pair[1] == "end",
            "runs overlapped: {text}"
        );
    }
    assert!(
        w.stderr_text().contains("exit status: 0"),
        "{}",
        w.stderr_text()
    );
}

#[test]
fn once_exits_with_the_commands_status_and_logs_it() {
    let m = Mount::start(&[]);
    let w = Watch::start(
        m.dir.path(),
        &m.repo,
        &["--once", "--", "sh", "-c", "exit 3"],
    );
    m.sh_ok("echo v > k && echo commit > .gitdb/ctl");
    let mut child = w;
    let end = std::time::Instant::now() + DEADLINE;
    let status = loop {
        if let Some(s) = child.child.try_wait().expect("wait") {
            break s;
        }
        assert!(std::time::Instant::now() < end, "--once did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(3), "{}", child.stderr_text());
    assert!(child.stderr_text().contains("exit status: 3"));

    let out = Command::new(env!("CARGO_BIN_EXE_gitdb"))
        .arg("--repo")
        .arg(&m.repo)
        .args(["watch", "--once", "--timeout", "200ms"])
        .output()
        .expect("gitdb watch");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no change under / within 200ms"));
}

/// A headless node watched while a peer commits: the merge (here a fast-forward) that gossip
/// brings wakes the watch on the other node's repository.
#[test]
fn a_change_from_a_peer_wakes_a_watch_on_the_other_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Serve::start(dir.path(), "a", &[]);
    let b = Serve::start(dir.path(), "b", &["--peer", &a.addr]);
    let client = |serve: &Serve, args: &[&str]| common::gitdb_ok(&serve.repo, args);
    client(&b, &["set", "/seed", "x"]);
    client(&b, &["commit", "-m", "seed"]);
    wait_for("a to have b's first commit", || a.head() == b.head());
    let w = Watch::start(dir.path(), &b.repo, &["/app"]);
    client(&a, &["set", "/app/port", "8080"]);
    client(&a, &["commit", "-m", "from a"]);
    let (head, keys) = w.next_change();
    assert_eq!(Some(head), b.head());
    assert_eq!(keys, ["A /app/port"]);
}
