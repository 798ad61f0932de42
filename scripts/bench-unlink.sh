#!/usr/bin/env bash
# Unlink benchmark: N committed files in one directory, then `rm -rf` of that directory, on
# gitdb-mount and on bindfs over tmpfs in the same run. Reports the unlink rate over the first
# and the last 10% of the deletions (a rate that falls as deletions pile up is the quadratic
# behaviour of issue 10) and the ratio to bindfs. Needs root (mounts tmpfs); installs bindfs
# if missing. The repository lives on tmpfs, so the runs differ only by the filesystem layer.
# Usage: scripts/bench-unlink.sh [N]      (N files, default 100000)
#        GITDB_MOUNT=/path/to/gitdb-mount scripts/bench-unlink.sh   (another build, no cargo)
set -euo pipefail
N="${1:-100000}"
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench-unlink.sh: needs root (tmpfs and FUSE mounts)" >&2; exit 1; }
command -v bindfs >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bindfs >/dev/null
}
if [ -z "${GITDB_MOUNT:-}" ]; then
  cargo build --release --bin gitdb-mount >&2
  BIN="$PWD/target/release/gitdb-mount"
else
  BIN="$GITDB_MOUNT"
fi

T="$(mktemp -d /tmp/gitdb-bench-unlink.XXXXXX)"
PID=""
cleanup() {
  set +e
  [ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  for m in "$T/gitdb" "$T/bind" "$T/bindsrc" "$T/repo"; do
    mountpoint -q "$m" && umount -l "$m"
  done
  rm -rf "$T"
}
trap cleanup EXIT
mkdir -p "$T/bindsrc" "$T/bind" "$T/gitdb" "$T/repo"
mount -t tmpfs tmpfs "$T/bindsrc"
mount -t tmpfs tmpfs "$T/repo"
bindfs "$T/bindsrc" "$T/bind"
RUST_LOG=warn "$BIN" "$T/gitdb" --repo "$T/repo/db.git" --node-id bench >"$T/mount.log" 2>&1 &
PID=$!
for _ in $(seq 200); do [ -e "$T/gitdb/.gitdb/head" ] && break; sleep 0.05; done
[ -e "$T/gitdb/.gitdb/head" ] || { cat "$T/mount.log" >&2; exit 1; }

# N files in one directory, written through each filesystem; gitdb's are then committed.
populate() {
  python3 - "$1/big" "$N" <<'EOF'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
os.makedirs(root, exist_ok=True)
for i in range(n):
    with open(os.path.join(root, f"f{i:06d}"), "wb") as f:
        f.write(b"value-%d\n" % i)
EOF
}
S=$(date +%s.%N)
populate "$T/gitdb"
echo "commit $N files" > "$T/gitdb/.gitdb/ctl"
E=$(date +%s.%N)
python3 -c "print(f'# gitdb: $N files created and committed in {($E - $S):.1f} s')"
populate "$T/bind"

# The rm is done in Python the way rm -rf does it (list, unlink each name, rmdir), with a
# timestamp per unlink, so the first and the last 10% are measured exactly. MAX_SECONDS (env)
# stops it early (for a build where it would take hours); the rates are then over what was done.
rmrf() { # dir
  python3 - "$1" <<'EOF'
import json, os, sys, time
d = sys.argv[1]
limit = float(os.environ.get("MAX_SECONDS") or "inf")
names = os.listdir(d)
stamps = [time.perf_counter()]
for name in names:
    os.unlink(os.path.join(d, name))
    stamps.append(time.perf_counter())
    if stamps[-1] - stamps[0] > limit:
        break
n = len(stamps) - 1
if n == len(names):
    os.rmdir(d)
tenth = max(1, n // 10)
first = tenth / (stamps[tenth] - stamps[0])
last = tenth / (stamps[n] - stamps[n - tenth])
print(json.dumps({"n": n, "total_s": round(stamps[n] - stamps[0], 2),
                  "all": round(n / (stamps[n] - stamps[0])),
                  "first10": round(first), "last10": round(last)}))
EOF
}
B=$(rmrf "$T/bind/big");  echo "bindfs: $B"
G=$(rmrf "$T/gitdb/big"); echo "gitdb:  $G"
[ -z "${MAX_SECONDS:-}" ] || { echo "(stopped after MAX_SECONDS=$MAX_SECONDS: no rm -rf round)"; exit 0; }
# The real rm -rf on top, for the record (same N, fresh directories, whole-run rate only).
populate "$T/gitdb"; echo "commit again" > "$T/gitdb/.gitdb/ctl"; populate "$T/bind"
S=$(date +%s.%N); rm -rf "$T/bind/big"; E=$(date +%s.%N)
RB=$(python3 -c "print(round($N / ($E - $S)))")
S=$(date +%s.%N); rm -rf "$T/gitdb/big"; E=$(date +%s.%N)
RG=$(python3 -c "print(round($N / ($E - $S)))")
echo "rm -rf: bindfs $RB unlinks/s, gitdb $RG unlinks/s"
[ ! -e "$T/gitdb/big" ] || { echo "bench-unlink.sh: gitdb directory still there" >&2; exit 1; }
python3 - "$B" "$G" "$RB" "$RG" <<'EOF'
import json, sys
b, g = json.loads(sys.argv[1]), json.loads(sys.argv[2])
rb, rg = int(sys.argv[3]), int(sys.argv[4])
print(f"# unlinks/s, n={b['n']}: first 10% / last 10% / whole, and gitdb/bindfs")
for k in ("first10", "last10", "all"):
    print(f"  {k:8s} bindfs {b[k]:>8} gitdb {g[k]:>8}   gitdb/bindfs {g[k] / b[k]:5.2f}")
print(f"  last10/first10: bindfs {b['last10'] / b['first10']:.2f} gitdb {g['last10'] / g['first10']:.2f}")
print(f"  rm -rf   bindfs {rb:>8} gitdb {rg:>8}   gitdb/bindfs {rg / rb:5.2f}")
EOF
