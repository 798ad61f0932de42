#!/usr/bin/env python3
"""Gossip convergence across real daemons on loopback.

Usage: scripts/bench-converge.py BIN_DIR [N ...]   (default N: 16 32)

For each N: N headless daemons (`gitdb serve`), in a random topology where each node knows 2
seeds among the nodes started before it, gossiping at the default interval (1 s) and fanout
(3). Writes go through each daemon's door (`gitdb set`, `gitdb commit`). Then:
- 10 trials of one commit on node 0: the time from the commit's return until every node's
  branch names it, and the hops it took (from the nodes' logs: whom each node pulled it from);
- 5 trials of commits on 4 nodes at once: the time until all N nodes name one head that
  holds all 4 writes.
Prints median and worst. Every daemon is stopped at the end, also on failure.
"""
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

WRITERS = 4


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def read_head(repo):
    try:
        with open(os.path.join(repo, "refs", "heads", "main")) as f:
            return f.read().strip()
    except OSError:
        return None


class Cluster:
    def __init__(self, bindir, n, root, seed):
        self.bindir, self.n, self.root = bindir, n, root
        rng = random.Random(seed)
        self.ports = [free_port() for _ in range(n)]
        self.repos, self.logs, self.procs = [], [], []
        for i in range(n):
            repo = os.path.join(root, f"n{i}.git")
            log = os.path.join(root, f"n{i}.log")
            seeds = rng.sample(range(i), min(2, i)) if i else []
            gossip = ["--listen", f"127.0.0.1:{self.ports[i]}"]
            for s in seeds:
                gossip += ["--peer", f"127.0.0.1:{self.ports[s]}"]
            env = dict(os.environ,
                       RUST_LOG=os.environ.get("GITDB_LOG", "warn,gitdb::gossip::service=debug"))
            cmd = [os.path.join(bindir, "gitdb"), "--repo", repo, "--node-id", f"n{i}",
                   "serve"] + gossip
            out = open(log, "w")
            self.procs.append(subprocess.Popen(cmd, stdout=out, stderr=out, env=env))
            self.repos.append(repo)
            self.logs.append(log)
        deadline = time.time() + 60
        for repo in self.repos:
            while not os.path.exists(os.path.join(repo, "gitdb", "door.sock")):
                if time.time() > deadline:
                    raise RuntimeError(f"{repo}: no daemon")
                time.sleep(0.02)
        # Let every node make its first contacts.
        time.sleep(3)

    def heads(self):
        return [read_head(r) for r in self.repos]

    def gitdb(self, i, *args):
        subprocess.run([os.path.join(self.bindir, "gitdb"), "--repo", self.repos[i],
                        "--node-id", f"n{i}", *args], check=True, stdout=subprocess.DEVNULL)

    def commit(self, i, key, value):
        self.gitdb(i, "set", f"bench/{key}", value)
        self.gitdb(i, "commit", "-m", "bench")
        return read_head(self.repos[i])

    def wait_all(self, pred, deadline_s=60):
        t0 = time.time()
        while True:
            hs = self.heads()
            if pred(hs):
                return time.time() - t0, hs[0]
            if time.time() - t0 > deadline_s:
                raise RuntimeError(f"no convergence in {deadline_s}s: {hs}")
            time.sleep(0.001)

    def hops(self, head):
        source = {}
        pat = re.compile(r"gossip: got ([0-9a-f]{40}) from node (n\d+)")
        for i, log in enumerate(self.logs):
            with open(log, errors="replace") as f:
                for line in f:
                    m = pat.search(line)
                    if m and m.group(1) == head and i not in source:
                        source[i] = int(m.group(2)[1:])
        depth = {0: 0}

        def d(i, seen=()):
            if i in depth:
                return depth[i]
            if i not in source or i in seen:
                return None
            up = d(source[i], seen + (i,))
            depth[i] = None if up is None else up + 1
            return depth[i]

        found = [d(i) for i in range(self.n)]
        return max((x for x in found if x is not None), default=0)

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def run(bindir, n):
    root = tempfile.mkdtemp(prefix=f"gitdb-converge-{n}-")
    c = Cluster(bindir, n, root, seed=n)
    try:
        times, hops = [], []
        for t in range(10):
            head = c.commit(0, "one", f"trial {t}\n")
            took, _ = c.wait_all(lambda hs: all(h == head for h in hs))
            times.append(took)
            hops.append(c.hops(head))
            time.sleep(0.2)
        conc = []
        for t in range(5):
            barrier = threading.Barrier(WRITERS)
            t0 = [0.0]

            def write(i):
                barrier.wait()
                if i == 0:
                    t0[0] = time.time()
                c.commit(i, f"w{i}", f"round {t} from {i}\n")

            threads = [threading.Thread(target=write, args=(i,)) for i in range(WRITERS)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            took, _ = c.wait_all(lambda hs: hs[0] is not None and all(h == hs[0] for h in hs)
                                 and c.all_have(t, hs[0]))
            conc.append(time.time() - t0[0])
            time.sleep(0.5)
        print(f"  {n} nodes: one commit: median {statistics.median(times)*1000:.0f} ms, worst "
              f"{max(times)*1000:.0f} ms, hops median {statistics.median(hops):.0f} max "
              f"{max(hops)}; commits on {WRITERS} nodes at once, time to one head: median "
              f"{statistics.median(conc)*1000:.0f} ms, worst {max(conc)*1000:.0f} ms")
    finally:
        c.stop()
        if os.environ.get("GITDB_KEEP"):
            print(f"  logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def all_have(self, t, head):
    # One head is not enough: it must hold every writer's round-t value. Asked once per head
    # (each answer costs 4 git processes; asking every millisecond loaded both CPUs).
    memo = self.__dict__.setdefault("have_memo", {})
    if (t, head) not in memo:
        memo[(t, head)] = all_have_uncached(self, t)
    return memo[(t, head)]


def all_have_uncached(self, t):
    for i in range(WRITERS):
        out = subprocess.run(["git", "--git-dir", self.repos[0], "show", f"main:bench/w{i}"],
                             capture_output=True, text=True)
        if out.stdout != f"round {t} from {i}\n":
            return False
    return True


Cluster.all_have = all_have

if __name__ == "__main__":
    bindir = sys.argv[1]
    sizes = [int(x) for x in sys.argv[2:]] or [16, 32]
    print(f"gossip convergence, {os.cpu_count()} cores, interval 1s, fanout 3, "
          f"each node knows 2 seeds")
    for n in sizes:
        run(bindir, n)
