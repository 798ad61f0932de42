//! A hostile authenticated peer against a real mount: a `gitdb-mount` with gossip on (a
//! cluster key file, its repository on a small tmpfs) whose seeds are a good `gitdb serve` and
//! a fake peer in this process that holds the key, completes the real handshake and answers
//! every pull with hostile objects — trees naming `..`, `.`, `.gitdb`, `.git`, names with `/`
//! or NUL, trees git would not write, a symlink where a directory is, a `.gitmodules` git fsck
//! refuses, edits escaping the tree,
//! blobs claiming 10 GB, blobs cut off mid-way. After each, the daemon is up and its mount
//! serves `cat` and `ls`, nothing outside the tree shows through it, no ref names the hostile
//! commit and `git fsck --strict` is clean, the peer is marked failing and backed off, the
//! disk holds what it held, the `gitdb` client still works and the good peer still syncs.
//! Then the strange but valid (a submodule entry, a symlink to `/etc` later replaced by a
//! directory, a 24 MiB value in parts) is taken, and shows as it should.

mod common;
mod gossip_support;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::serve::Serve;
use common::{Mount, Tmpfs, git, gitdb_ok, wait_for};
use gitdb::gossip::ClusterKey;
use gitdb::gossip::connection::Connection;
use gitdb::gossip::message::{
    Announce, BLOB_PART, Message, Packed, WireBlob, WireEdit, WireItem, WireValue,
};
use gix::ObjectId;
use gix::objs::Kind;
use gossip_support::{fsck_strict, has_object, oid_of, raw_commit, raw_tree, wire};

/// The node id of the mount (what the fake peer counts pulls by).
const NODE: &str = "mounted";

/// Bytes deflate cannot shrink (a disk-filling blob must really take its size).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut x = seed | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// What the fake peer answers: its head, then the messages that answer a pull (`Items` and,
/// unless it vanishes mid-transfer, `End`).
#[derive(Clone)]
struct Script {
    head: ObjectId,
    answer: Vec<Message>,
}

struct Hostile {
    addr: SocketAddr,
    script: Arc<Mutex<Script>>,
    /// Pulls the mount made (not the good peer, which learns of us from the mount).
    pulls: Arc<AtomicUsize>,
    /// Connections the mount opened.
    dials: Arc<AtomicUsize>,
}

fn hostile_peer(key: ClusterKey) -> Hostile {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let script = Arc::new(Mutex::new(Script {
        head: ObjectId::null(gix::hash::Kind::Sha1),
        answer: vec![],
    }));
    let pulls = Arc::new(AtomicUsize::new(0));
    let dials = Arc::new(AtomicUsize::new(0));
    let (s2, p2, d2) = (script.clone(), pulls.clone(), dials.clone());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                let (script, pulls, dials, key) = (s2.clone(), p2.clone(), d2.clone(), key.clone());
                tokio::spawn(async move {
                    let t = Duration::from_secs(10);
                    let Ok(mut c) = Connection::accept(s, &key, t).await else {
                        return;
                    };
                    let Ok(Message::Announce(theirs)) = c.recv(t).await else {
                        return;
                    };
                    let mine = theirs.node == NODE;
                    if mine {
                        dials.fetch_add(1, Ordering::SeqCst);
                    }
                    let Script { head, answer } = script.lock().unwrap().clone();
                    let announce = Announce {
                        node: "evil".into(),
                        listen: None,
                        head: Some(wire(head)),
                        clock: vec![("evil".into(), 1)],
                        hlc_millis: 0,
                        hlc_counter: 0,
                        peers: vec![],
                        wants_yours: false,
                    };
                    if c.send(&Message::Announce(announce)).await.is_err() {
                        return;
                    }
                    if let Ok(Message::Pull { .. }) = c.recv(t).await {
                        for m in &answer {
                            if c.send(m).await.is_err() {
                                break;
                            }
                        }
                        if mine {
                            pulls.fetch_add(1, Ordering::SeqCst);
                        }
                        if !matches!(answer.last(), Some(Message::End { .. })) {
                            // Vanishes mid-transfer: the connection drops here.
                            return;
                        }
                        // Whatever the node says next (it hangs up on a refusal).
                        let _ = c.recv(t).await;
                    }
                });
            }
        });
    });
    Hostile {
        addr,
        script,
        pulls,
        dials,
    }
}

fn items(items: Vec<WireItem>) -> Message {
    Message::Items(Packed::pack(&items))
}

/// A hostile case: the commit the peer offers, what it answers, what the node's log must say
/// about it.
struct Case {
    what: &'static str,
    head: ObjectId,
    answer: Vec<Message>,
    reason: &'static str,
}

fn whole(what: &'static str, reason: &'static str, pre: Vec<WireItem>, tree: Vec<u8>) -> Case {
    let commit = raw_commit(oid_of(Kind::Tree, &tree), &[], what);
    let mut all = pre;
    all.push(WireItem::Tree(tree));
    all.push(WireItem::Commit {
        data: commit.clone(),
        edits: None,
    });
    Case {
        what,
        head: oid_of(Kind::Commit, &commit),
        answer: vec![items(all), Message::End { commits: 1 }],
        reason,
    }
}

fn edits(what: &'static str, reason: &'static str, es: Vec<WireEdit>) -> Case {
    // The tree the commit names does not matter: the edits are refused first.
    let commit = raw_commit(oid_of(Kind::Tree, b""), &[], what);
    Case {
        what,
        head: oid_of(Kind::Commit, &commit),
        answer: vec![
            items(vec![WireItem::Commit {
                data: commit.clone(),
                edits: Some(es),
            }]),
            Message::End { commits: 1 },
        ],
        reason,
    }
}

fn edit(path: &str, mode: u32, data: &[u8]) -> WireEdit {
    WireEdit {
        path: path.into(),
        value: Some(WireValue {
            mode,
            blob: WireBlob::Data(data.to_vec()),
        }),
    }
}

/// A blob of `claim` bytes in parts, of which `sent` bytes come, then `End` unless `vanish`.
fn parts(what: &'static str, reason: &'static str, claim: u64, sent: usize, vanish: bool) -> Case {
    let commit = raw_commit(oid_of(Kind::Tree, b""), &[], what);
    let mut answer: Vec<Message> = noise(sent, claim)
        .chunks(BLOB_PART)
        .map(|c| {
            items(vec![WireItem::BlobPart {
                size: claim,
                data: c.to_vec(),
            }])
        })
        .collect();
    if !vanish {
        answer.push(Message::End { commits: 1 });
    }
    Case {
        what,
        head: oid_of(Kind::Commit, &commit),
        answer,
        reason,
    }
}

fn hostile_cases() -> Vec<Case> {
    let v = b"v".to_vec();
    let blob = oid_of(Kind::Blob, &v);
    let sub_tree = raw_tree(&[("100644", b"x", blob)]);
    let sub = oid_of(Kind::Tree, &sub_tree);
    let with_v = |extra: Vec<WireItem>| {
        let mut all = vec![WireItem::Blob(v.clone())];
        all.extend(extra);
        all
    };
    // `git fsck` (plain, not only --strict) refuses a repository holding it.
    let bad_modules = b"[submodule \"a\"]\n\tpath = a\n\turl = -u\n".to_vec();
    let bad_modules_id = oid_of(Kind::Blob, &bad_modules);
    let named = |what, reason, name: &'static [u8]| {
        whole(
            what,
            reason,
            with_v(vec![]),
            raw_tree(&[("100644", name, blob)]),
        )
    };
    vec![
        named("a tree entry named ..", "named \"..\"", b".."),
        named("a tree entry named .", "named \".\"", b"."),
        named(
            "a root entry named .gitdb",
            "its root holds .gitdb",
            b".gitdb",
        ),
        named("a tree entry named .git", "spelling of .git", b".git"),
        named("a tree entry named .GIT", "spelling of .git", b".GIT"),
        named("a tree entry with a /", "holds '/' or NUL", b"etc/passwd"),
        // A NUL ends the name early: the rest is read as the id, and the tree as garbage.
        named("a tree entry with a NUL", "malformed", b"a\0b"),
        whole(
            "a directory .gitdb holding a ctl",
            "its root holds .gitdb",
            with_v(vec![WireItem::Tree(sub_tree.clone())]),
            raw_tree(&[("40000", b".gitdb", sub)]),
        ),
        whole(
            "a symlink entry naming a directory",
            "is a Blob by its mode, but names a Tree",
            with_v(vec![WireItem::Tree(sub_tree.clone())]),
            raw_tree(&[("120000", b"a", sub)]),
        ),
        whole(
            "a directory entry naming a blob",
            "is a Tree by its mode, but names a Blob",
            with_v(vec![]),
            raw_tree(&[("40000", b"a", blob)]),
        ),
        whole(
            "a name as a symlink and as a directory",
            "twice",
            with_v(vec![WireItem::Tree(sub_tree.clone())]),
            raw_tree(&[("120000", b"a", blob), ("40000", b"a", sub)]),
        ),
        whole(
            "a .gitmodules whose url is an option",
            "submodule \"a\" at url \"-u\"",
            vec![WireItem::Blob(bad_modules.clone())],
            raw_tree(&[("100644", b".gitmodules", bad_modules_id)]),
        ),
        whole(
            "a .gitmodules that is a symlink",
            "a .gitmodules that is a symlink",
            with_v(vec![]),
            raw_tree(&[("120000", b".gitmodules", blob)]),
        ),
        whole(
            "entries out of git's order",
            "out of git's order",
            with_v(vec![]),
            raw_tree(&[("100644", b"b", blob), ("100644", b"a", blob)]),
        ),
        whole(
            "a mode git does not write",
            "which git does not write",
            with_v(vec![]),
            raw_tree(&[("100664", b"a", blob)]),
        ),
        whole(
            "a zero-padded mode",
            "which git does not write",
            with_v(vec![WireItem::Tree(sub_tree.clone())]),
            raw_tree(&[("040000", b"a", sub)]),
        ),
        edits(
            "an edit climbing out with ..",
            "named \"..\"",
            vec![edit(
                "../../etc/passwd",
                0o100644,
                b"root::0:0::/:/bin/sh\n",
            )],
        ),
        edits(
            "an edit through .",
            "named \".\"",
            vec![edit("a/./b", 0o100644, b"x")],
        ),
        edits(
            "an edit of the control file",
            "reserved .gitdb",
            vec![edit(".gitdb/ctl", 0o100644, b"rollback\n")],
        ),
        edits(
            "an edit with a NUL",
            "holds '/' or NUL",
            vec![edit("a\0b", 0o100644, b"x")],
        ),
        edits(
            "an absolute edit path",
            "named \"\"",
            vec![edit("/etc/passwd", 0o100644, b"x")],
        ),
        edits(
            "a symlink to /etc and a file below it",
            "do not apply",
            vec![
                edit("a", 0o120000, b"/etc"),
                edit("a/passwd", 0o100644, b"root::0:0::/:/bin/sh\n"),
            ],
        ),
        edits(
            "an edit making a submodule",
            "has mode 160000",
            vec![edit("sub", 0o160000, b"x")],
        ),
        parts(
            "a blob claiming 10 GB",
            "No space left on device",
            10_000_000_000,
            BLOB_PART,
            false,
        ),
        parts(
            "a blob claiming 10 GB that vanishes",
            "No space left on device",
            10_000_000_000,
            2 * BLOB_PART,
            true,
        ),
        parts(
            "a blob of 40 MiB cut after 8 MiB by an end",
            "the rest of a blob",
            40 << 20,
            2 * BLOB_PART,
            false,
        ),
        parts(
            "a blob of 40 MiB cut after 8 MiB by a hang-up",
            "exchange with",
            40 << 20,
            2 * BLOB_PART,
            true,
        ),
        parts(
            "a blob of 4 MiB and a byte whose parts bring 8 MiB",
            "longer than the blob",
            (4 << 20) + 1,
            2 * BLOB_PART,
            false,
        ),
    ]
}

/// Writes `cmd` to the mount's ctl file; the errno name the write failed with, or "ok".
fn ctl(m: &Mount, cmd: &str) -> String {
    m.python(&format!(
        "import os,sys,errno\nfd=os.open(sys.argv[1]+'/.gitdb/ctl',os.O_WRONLY)\n\
         try:\n    os.write(fd,b'{cmd}\\n'); print('ok')\n\
         except OSError as e:\n    print(errno.errorcode[e.errno])"
    ))
    .trim()
    .to_owned()
}

fn status(m: &Mount) -> serde_json::Value {
    serde_json::from_str(&m.sh_ok("cat .gitdb/status")).unwrap()
}

fn peer(m: &Mount, addr: SocketAddr) -> serde_json::Value {
    let s = status(m);
    s["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["addr"] == addr.to_string())
        .cloned()
        .unwrap_or_else(|| panic!("no peer {addr} in {s}"))
}

/// Bytes free on the filesystem of `path`.
fn free(path: &Path) -> u64 {
    let st = nix::sys::statvfs::statvfs(path).unwrap();
    st.blocks_available() * st.fragment_size()
}

/// Files in `objects/` itself: loose objects live one level down, so these are temp files.
fn temp_files(repo: &Path) -> Vec<String> {
    std::fs::read_dir(repo.join("objects"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn root_names(m: &Mount) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The mount, its good peer and the fake one, wired with one cluster key.
struct Cluster {
    // Dropped in this order: the daemons before the disk they write to.
    m: Mount,
    good: Serve,
    evil: Hostile,
    _disk: Tmpfs,
    _dir: tempfile::TempDir,
}

fn cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("cluster.key");
    std::fs::write(
        &key_file,
        "a cluster secret of more than thirty-two bytes\n",
    )
    .unwrap();
    let key = ClusterKey::from_file(&key_file).unwrap();
    let key_arg = key_file.to_str().unwrap().to_owned();
    let good = Serve::start(dir.path(), "good", &["--cluster-key-file", &key_arg]);
    let evil = hostile_peer(key);
    let disk = Tmpfs::mount("96M");
    let mut m = Mount::prepare("mnt", &[]);
    m.repo = disk.path().join("repo.git");
    m.node_id = NODE.into();
    let evil_addr = evil.addr.to_string();
    m.spawn(&[
        "--listen",
        "127.0.0.1:0",
        "--peer",
        &evil_addr,
        "--peer",
        &good.addr,
        "--interval",
        "300ms",
        "--cluster-key-file",
        &key_arg,
    ]);
    Cluster {
        m,
        good,
        evil,
        _disk: disk,
        _dir: dir,
    }
}

/// Offers `head` with `answer` and runs a `sync`, which pulls it from the fake peer (a
/// hostile head nobody else takes); returns the log the sync added.
fn offer(c: &Cluster, head: ObjectId, answer: Vec<Message>) -> String {
    let pulls = c.evil.pulls.load(Ordering::SeqCst);
    let log = offer_valid(c, head, answer);
    wait_for("the mount pulled from the fake peer", || {
        c.evil.pulls.load(Ordering::SeqCst) > pulls
    });
    log
}

/// Offers `head` with `answer` and runs a `sync`. A valid head may reach the mount through the
/// good peer, which learns of the fake one from the mount and pulls from it too.
fn offer_valid(c: &Cluster, head: ObjectId, answer: Vec<Message>) -> String {
    *c.evil.script.lock().unwrap() = Script { head, answer };
    let log_before = c.m.log_text().len();
    // `sync` runs an exchange with every peer now, backoff or not, and succeeds because the
    // good peer answers.
    assert_eq!(ctl(&c.m, "sync"), "ok", "{}", c.m.log_text());
    let log = c.m.log_text();
    log[log_before.min(log.len())..].to_owned()
}

/// The good peer has the mount's head (and the mount is still a working node).
fn good_peer_syncs(c: &Cluster, value: &str) {
    c.m.sh_ok(&format!(
        "mkdir -p app && printf '{value}' > app/k && echo commit > .gitdb/ctl"
    ));
    let head = std::fs::read_to_string(c.m.path(".gitdb/head"))
        .unwrap()
        .trim()
        .to_owned();
    wait_for("the good peer has the mount's head", || {
        c.good.head().as_deref() == Some(&*head)
    });
    assert_eq!(git(&c.good.repo, &["show", "main:app/k"], None), value);
}

#[test]
fn a_hostile_peer_cannot_reach_outside_the_tree_crash_the_mount_or_fill_its_disk() {
    let mut c = cluster();
    good_peer_syncs(&c, "0");
    let expected_root = vec![".gitdb".to_string(), "app".to_string()];
    assert_eq!(root_names(&c.m), expected_root);
    let passwd = std::fs::read("/etc/passwd").unwrap();
    let free_at_start = free(c._disk.path());
    let mut failures = 0u64;
    for (i, case) in hostile_cases().into_iter().enumerate() {
        let what = case.what;
        let log = offer(&c, case.head, case.answer);
        assert!(
            log.contains("exchange with") && log.contains(case.reason),
            "{what}: the log does not say {:?}:\n{log}",
            case.reason
        );
        // The daemon is up and serves its mount.
        assert!(c.m.daemon_running(), "{what}: {}", c.m.log_text());
        assert_eq!(c.m.sh_ok("cat app/k"), i.to_string(), "{what}");
        assert_eq!(root_names(&c.m), expected_root, "{what}");
        assert!(c.m.sh_ok("ls .gitdb").contains("ctl"), "{what}");
        assert!(
            !c.m.path("etc").exists() && !c.m.path("a").exists(),
            "{what}"
        );
        assert_eq!(std::fs::read("/etc/passwd").unwrap(), passwd, "{what}");
        // Nothing names the hostile commit; the repository is sound.
        assert!(
            !has_object(&c.m.repo, case.head),
            "{what}: the commit was kept"
        );
        let refs = git(&c.m.repo, &["for-each-ref", "--format=%(objectname)"], None);
        assert!(!refs.contains(&case.head.to_string()), "{what}: {refs}");
        fsck_strict(&c.m.repo);
        // The peer is marked failing and backed off.
        let p = peer(&c.m, c.evil.addr);
        let f = p["failures"].as_u64().unwrap();
        assert!(f > failures, "{what}: {p}");
        assert!(
            p["backoff_ms"].as_u64().unwrap() > 0 && p["alive"] == false,
            "{what}: {p}"
        );
        failures = f;
        // Nothing of a cut blob stays on the disk.
        assert!(
            temp_files(&c.m.repo).is_empty(),
            "{what}: {:?}",
            temp_files(&c.m.repo)
        );
        assert!(
            free(c._disk.path()) + (2 << 20) >= free_at_start,
            "{what}: {} bytes free, {free_at_start} at the start",
            free(c._disk.path())
        );
        // The client and the good peer still work.
        assert_eq!(gitdb_ok(&c.m.repo, &["get", "app/k"]), i.to_string());
        good_peer_syncs(&c, &(i + 1).to_string());
    }
    // Backed off: the timer leaves the failing peer alone (its backoff is 30 s by now) while it
    // keeps exchanging with the good one.
    let dials = c.evil.dials.load(Ordering::SeqCst);
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    let backoff = peer(&c.m, c.evil.addr)["backoff_ms"].as_u64().unwrap();
    assert!(
        c.evil.dials.load(Ordering::SeqCst) <= dials + 1,
        "the fake peer was dialed {} times in 3 s with a backoff of {backoff} ms",
        c.evil.dials.load(Ordering::SeqCst) - dials
    );
    fsck_strict(&c.good.repo);
    assert!(c.m.signal_and_wait(libc::SIGTERM).success());
}

#[test]
fn strange_but_valid_trees_are_taken_and_show_as_they_should() {
    let c = cluster();
    good_peer_syncs(&c, "0");
    let v = b"kept\n".to_vec();
    let blob = oid_of(Kind::Blob, &v);

    // A submodule entry beside a value: taken, the value shows, the gitlink does not.
    let tree = raw_tree(&[
        ("100644", b"f", blob),
        ("160000", b"sub", oid_of(Kind::Commit, b"elsewhere")),
    ]);
    let case = whole("a submodule", "", vec![WireItem::Blob(v.clone())], tree);
    offer_valid(&c, case.head, case.answer);
    wait_for("the submodule commit is merged", || c.m.path("f").exists());
    assert_eq!(c.m.sh_ok("cat f"), "kept\n");
    assert!(!c.m.path("sub").exists(), "{:?}", root_names(&c.m));
    fsck_strict(&c.m.repo);

    // A symlink to /etc: a value like any other, shown as a symlink (the daemon never follows
    // it); then a child commit makes `a` a directory holding `passwd`, its own key.
    let link = b"/etc".to_vec();
    let t1 = raw_tree(&[("120000", b"a", oid_of(Kind::Blob, &link))]);
    let c1 = raw_commit(oid_of(Kind::Tree, &t1), &[], "a link");
    let c1_id = oid_of(Kind::Commit, &c1);
    offer_valid(
        &c,
        c1_id,
        vec![
            items(vec![
                WireItem::Blob(link),
                WireItem::Tree(t1),
                WireItem::Commit {
                    data: c1,
                    edits: None,
                },
            ]),
            Message::End { commits: 1 },
        ],
    );
    wait_for("the link shows", || {
        std::fs::read_link(c.m.path("a")).is_ok()
    });
    assert_eq!(
        std::fs::read_link(c.m.path("a")).unwrap(),
        Path::new("/etc")
    );
    let mine = b"not the host's\n".to_vec();
    let sub = raw_tree(&[("100644", b"passwd", oid_of(Kind::Blob, &mine))]);
    let t2 = raw_tree(&[("40000", b"a", oid_of(Kind::Tree, &sub))]);
    let c2 = raw_commit(oid_of(Kind::Tree, &t2), &[c1_id], "a directory");
    let passwd = std::fs::read("/etc/passwd").unwrap();
    offer_valid(
        &c,
        oid_of(Kind::Commit, &c2),
        vec![
            items(vec![
                WireItem::Blob(mine.clone()),
                WireItem::Tree(sub),
                WireItem::Tree(t2),
                WireItem::Commit {
                    data: c2,
                    edits: None,
                },
            ]),
            Message::End { commits: 1 },
        ],
    );
    wait_for("a is a directory", || c.m.path("a").is_dir());
    assert!(std::fs::symlink_metadata(c.m.path("a")).unwrap().is_dir());
    assert_eq!(std::fs::read(c.m.path("a/passwd")).unwrap(), mine);
    assert_eq!(std::fs::read("/etc/passwd").unwrap(), passwd);

    // A 24 MiB value in parts, streamed to disk and checked by its id.
    let big = noise(24 << 20, 7);
    let big_id = oid_of(Kind::Blob, &big);
    let t3 = raw_tree(&[("100644", b"big", big_id)]);
    let c3 = raw_commit(oid_of(Kind::Tree, &t3), &[], "a large value");
    let c3_id = oid_of(Kind::Commit, &c3);
    let mut answer: Vec<Message> = gitdb::gossip::message::split(WireItem::Blob(big.clone()))
        .into_iter()
        .map(|p| items(vec![p]))
        .collect();
    answer.push(items(vec![
        WireItem::Tree(t3),
        WireItem::Commit {
            data: c3,
            edits: None,
        },
    ]));
    answer.push(Message::End { commits: 1 });
    offer_valid(&c, c3_id, answer);
    wait_for("the large value shows", || c.m.path("big").exists());
    assert_eq!(std::fs::read(c.m.path("big")).unwrap(), big);
    assert!(temp_files(&c.m.repo).is_empty());
    fsck_strict(&c.m.repo);
    // The good peer gets all of it from the mount.
    let head = std::fs::read_to_string(c.m.path(".gitdb/head"))
        .unwrap()
        .trim()
        .to_owned();
    wait_for("the good peer has the mount's head", || {
        c.good.head().as_deref() == Some(&*head)
    });
    assert_eq!(
        git(&c.good.repo, &["cat-file", "-s", "main:big"], None),
        (24 << 20).to_string()
    );
}
