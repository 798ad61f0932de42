//! Metrics as an operator scrapes them: `/.gitdb/metrics` and `gitdb metrics` from a real
//! mount and from headless gossip nodes, read by the real node_exporter textfile collector
//! (package prometheus-node-exporter, which `scripts/test.sh` installs).

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use common::serve::Serve;
use common::{Mount, wait_for};

/// The value of the sample `name` (with its labels, as written) in exposition `text`.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn gitdb_metrics(repo: &std::path::Path) -> String {
    common::gitdb_ok(repo, &["metrics"])
}

/// Runs node_exporter with only its textfile collector over `dir` and returns one scrape.
fn node_exporter_scrape(dir: &std::path::Path) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut child = Command::new("prometheus-node-exporter")
        .args(["--collector.disable-defaults", "--collector.textfile"])
        .arg(format!("--collector.textfile.directory={}", dir.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus-node-exporter (scripts/test.sh installs it)");
    let mut body = String::new();
    wait_for("node_exporter to answer", || {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let _ = s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n");
        body.clear();
        s.read_to_string(&mut body).is_ok() && body.contains("node_textfile_scrape_error")
    });
    let _ = child.kill();
    let _ = child.wait();
    body
}

#[test]
fn a_mounts_metrics_count_what_it_did_and_node_exporter_reads_them_typed() {
    let m = Mount::start(&[]);
    m.sh_ok("mkdir -p app && echo 8080 > app/port && echo commit > .gitdb/ctl");
    m.sh_ok("echo 9090 > app/port && cat app/port");
    let text = m.sh_ok("cat .gitdb/metrics");
    assert_eq!(sample(&text, "gitdb_commits_total"), Some(1.0), "{text}");
    assert_eq!(
        sample(&text, "gitdb_commit_duration_seconds_count"),
        Some(1.0)
    );
    assert_eq!(sample(&text, "gitdb_dirty_keys"), Some(1.0), "{text}");
    assert!(
        sample(&text, "gitdb_journal_bytes").is_some_and(|b| b > 0.0),
        "{text}"
    );
    assert!(
        sample(&text, "gitdb_fuse_requests_total{op=\"create\"}").is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(
        text.contains("gitdb_node_info{branch=\"main\",node=\"test-node\""),
        "{text}"
    );
    // The client asks the daemon, and gets the mount's counters too.
    let via_door = gitdb_metrics(&m.repo);
    assert_eq!(
        sample(&via_door, "gitdb_commits_total"),
        Some(1.0),
        "{via_door}"
    );
    assert!(via_door.contains("gitdb_fuse_requests_total{op=\"lookup\"}"));

    let textfiles = m.dir.path().join("textfile");
    std::fs::create_dir(&textfiles).expect("dir");
    std::fs::write(textfiles.join("gitdb.prom"), &via_door).expect("write");
    let scraped = node_exporter_scrape(&textfiles);
    assert_eq!(
        sample(&scraped, "node_textfile_scrape_error"),
        Some(0.0),
        "{scraped}"
    );
    for typed in [
        "# TYPE gitdb_commits_total counter",
        "# TYPE gitdb_fuse_requests_total counter",
        "# TYPE gitdb_commit_duration_seconds histogram",
        "# TYPE gitdb_dirty_keys gauge",
    ] {
        assert!(
            scraped.contains(typed),
            "{typed:?} not in the scrape:\n{scraped}"
        );
    }
}

#[test]
fn a_gossip_nodes_metrics_show_its_peers_rounds_and_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Serve::start(dir.path(), "a", &[]);
    let b = Serve::start(dir.path(), "b", &["--peer", &a.addr]);
    common::gitdb_ok(&b.repo, &["set", "/k", "v"]);
    common::gitdb_ok(&b.repo, &["commit", "-m", "k"]);
    wait_for("a to have b's commit", || a.head() == b.head());
    let mut text = String::new();
    wait_for("b to count a as up after an exchange", || {
        text = gitdb_metrics(&b.repo);
        sample(&text, "gitdb_peers{state=\"up\"}") == Some(1.0)
    });
    let status = common::gitdb_ok(&b.repo, &["status"]);
    assert_eq!(
        sample(&text, "gitdb_peers{state=\"down\"}"),
        Some(0.0),
        "{status}"
    );
    assert!(
        sample(&text, "gitdb_sync_rounds_total").is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(
        sample(&text, "gitdb_gossip_sent_bytes_total").is_some_and(|n| n > 0.0),
        "{text}"
    );
    assert!(
        sample(&text, "gitdb_gossip_received_bytes_total").is_some_and(|n| n > 0.0),
        "{text}"
    );
    assert!(
        sample(&text, "gitdb_last_sync_age_seconds").is_some_and(|s| s < 60.0),
        "{text}"
    );
}
