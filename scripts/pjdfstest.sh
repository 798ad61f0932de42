#!/usr/bin/env bash
# Runs the pjdfstest POSIX suite (crates.io `pjdfstest` 0.2.2) against tmpfs (the reference)
# and against a fresh gitdb-mount, and prints pass/fail/skip per syscall group for both.
# Not part of scripts/test.sh: it needs root and takes minutes. gitdb fails some cases by
# design (special files, hard links: see README, "pjdfstest"); they are listed, each with its
# reason, in scripts/pjdfstest.expected, and this script fails (exit 1) when any case outside
# that list fails on gitdb.
#
# Usage (as root): scripts/pjdfstest.sh [PATTERN...]    e.g. scripts/pjdfstest.sh rename chmod
# Env: PJD_ROOT (default /tmp/pjd: pjdfstest is installed there if missing, outputs go there),
#      GITDB_MOUNT_ARGS (default "-o allow_other,default_permissions": the suite switches to
#      other users, whom FUSE refuses without allow_other; default_permissions makes the kernel
#      check modes the way tmpfs does).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "pjdfstest.sh: run as root (mounts, user switches)" >&2; exit 1; }

root=${PJD_ROOT:-/tmp/pjd}
args=${GITDB_MOUNT_ARGS:--o allow_other,default_permissions}
mkdir -p "$root"
pjd=$root/bin/pjdfstest
if [ ! -x "$pjd" ]; then
  if ! dpkg -s libacl1-dev >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libacl1-dev >/dev/null
  fi
  nice -n 10 cargo install pjdfstest --version 0.2.2 --root "$root"
fi
nice -n 10 cargo build --release --bin gitdb-mount
bin=${CARGO_TARGET_DIR:-target}/release/gitdb-mount

# Dummy users must exist: nobody/nogroup and daemon/daemon do on Debian.
cat > "$root/pjdfstest.toml" <<'EOF'
[features]

[settings]
naptime = 0.02
allow_remount = false

[dummy_auth]
entries = [
  ["nobody", "nogroup"],
  ["daemon", "daemon"],
]
EOF

work=$(mktemp -d "$root/run.XXXXXX")
# Other users must reach the mountpoints (mktemp makes 0700).
chmod 755 "$work"
mkdir -p "$work/tmpfs" "$work/gitdb"
daemon=
cleanup() {
  if [ -n "$daemon" ]; then
    kill -TERM "$daemon" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$daemon" 2>/dev/null || break; sleep 0.1; done
  fi
  for m in "$work/tmpfs" "$work/gitdb"; do
    if mountpoint -q "$m"; then umount -l "$m"; fi
  done
}
trap cleanup EXIT INT TERM

run() { # run NAME DIR: pjdfstest inside DIR, output in $work/NAME.out
  (cd "$2" && "$pjd" -c "$root/pjdfstest.toml" -p "$2" "${@:3}" > "$work/$1.out" 2>&1) || true
}

mount -t tmpfs tmpfs "$work/tmpfs"
run tmpfs "$work/tmpfs" "$@"

# shellcheck disable=SC2086 # $args is a list of options
"$bin" "$work/gitdb" --repo "$work/repo.git" --node-id pjd $args > "$work/gitdb-mount.log" 2>&1 &
daemon=$!
for _ in $(seq 200); do [ -e "$work/gitdb/.gitdb/head" ] && break; sleep 0.05; done
[ -e "$work/gitdb/.gitdb/head" ] || { echo "gitdb-mount did not come up: $work/gitdb-mount.log" >&2; exit 1; }
run gitdb "$work/gitdb" "$@"

status=0
python3 - "$work/tmpfs.out" "$work/gitdb.out" scripts/pjdfstest.expected <<'EOF' || status=$?
import collections, re, sys
def parse(path):
    groups = collections.OrderedDict()
    for line in open(path, errors="replace"):
        m = re.match(r"^([^:\s]+)::\S+\s+(ok|FAILED|skipped)$", line.rstrip("\n"))
        if m:
            groups.setdefault(m.group(1), collections.Counter())[m.group(2)] += 1
    return groups
tmpfs, gitdb = parse(sys.argv[1]), parse(sys.argv[2])
fmt = "{:<16} {:>5} {:>5} {:>5}   {:>5} {:>5} {:>5}"
print(fmt.format("group", "tmpfs", "fail", "skip", "gitdb", "fail", "skip"))
total = [collections.Counter(), collections.Counter()]
for g in list(dict.fromkeys(list(tmpfs) + list(gitdb))):
    t, d = tmpfs.get(g, collections.Counter()), gitdb.get(g, collections.Counter())
    total[0].update(t); total[1].update(d)
    print(fmt.format(g, t["ok"], t["FAILED"], t["skipped"], d["ok"], d["FAILED"], d["skipped"]))
t, d = total
print(fmt.format("total", t["ok"], t["FAILED"], t["skipped"], d["ok"], d["FAILED"], d["skipped"]))

def cases(path):
    out = {}
    for line in open(path, errors="replace"):
        m = re.match(r"^(\S+::\S+)\s+(ok|FAILED|skipped)$", line.rstrip("\n"))
        if m:
            out[m.group(1)] = m.group(2)
    return out
expected = {}
for line in open(sys.argv[3]):
    if line.strip() and not line.startswith("#"):
        name, _, reason = line.rstrip("\n").partition(" ")
        expected[name] = reason.strip()
got = cases(sys.argv[2])
unexpected = sorted(n for n, r in got.items() if r == "FAILED" and n not in expected)
fixed = sorted(n for n, r in got.items() if r != "FAILED" and n in expected)
for n in fixed:
    print("expected to fail, passed (drop it from scripts/pjdfstest.expected):", n)
for n in unexpected:
    print("UNEXPECTED FAILURE:", n)
failed = sum(r == "FAILED" for r in got.values())
if unexpected:
    print("%d unexpected failures (not in scripts/pjdfstest.expected)" % len(unexpected))
else:
    print("%d failures, all expected (scripts/pjdfstest.expected)" % failed)
sys.exit(1 if unexpected else 0)
EOF
echo "outputs: $work/tmpfs.out $work/gitdb.out (failures: grep FAILED)"
exit "$status"
