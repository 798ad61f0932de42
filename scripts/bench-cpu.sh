#!/usr/bin/env bash
# Daemon CPU per small-file run: how much CPU time gitdb-mount and bindfs (both over tmpfs)
# spend serving the same fsbench.py workload, and their context switches. On a saturated
# machine every FUSE daemon's throughput follows the CPU it needs per request (the wake-ups
# are the same for both), so this is the figure to move when the busy-machine ratios lag;
# it is far steadier than ops/s on a shared VM. gitdb runs with -o busy_poll=0 so that
# polling's spinning is not counted as work.
# Usage: scripts/bench-cpu.sh [N] [ROUNDS]   (N files, default 3000; ROUNDS, default 3)
# Env: GITDB_MOUNT, the gitdb-mount binary to measure (default: build target/release's).
# Needs root (tmpfs and FUSE mounts); installs bindfs if missing.
set -euo pipefail
N="${1:-3000}"
ROUNDS="${2:-3}"
BENCH="$(cd "$(dirname "$0")" && pwd)/fsbench.py"
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench-cpu.sh: needs root (tmpfs and FUSE mounts)" >&2; exit 1; }
command -v bindfs >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bindfs >/dev/null
}
if [ -z "${GITDB_MOUNT:-}" ]; then
  cargo build --release --bin gitdb-mount >&2
  GITDB_MOUNT="$PWD/target/release/gitdb-mount"
fi

T="$(mktemp -d /tmp/gitdb-bench-cpu.XXXXXX)"
GP=""
cleanup() {
  set +e
  [ -n "$GP" ] && kill -TERM "$GP" 2>/dev/null && wait "$GP" 2>/dev/null
  for m in "$T/bind" "$T/gitdb" "$T/src" "$T/repo"; do
    mountpoint -q "$m" && umount -l "$m"
  done
  rm -rf "$T"
}
trap cleanup EXIT
mkdir -p "$T/src" "$T/bind" "$T/gitdb" "$T/repo"
mount -t tmpfs tmpfs "$T/src"
mount -t tmpfs tmpfs "$T/repo"
bindfs "$T/src" "$T/bind"
BP=$(pgrep -n -x bindfs)
RUST_LOG=warn "$GITDB_MOUNT" "$T/gitdb" --repo "$T/repo/db.git" --node-id bench -o busy_poll=0 \
  >"$T/mount.log" 2>&1 &
GP=$!
for _ in $(seq 200); do [ -e "$T/gitdb/.gitdb/head" ] && break; sleep 0.05; done
[ -e "$T/gitdb/.gitdb/head" ] || { cat "$T/mount.log" >&2; exit 1; }

# CPU of a process and all its threads (and, for gitdb, its attribute warmer child), in ms.
cpu_ms() {
  local total=0 p
  for p in "$@"; do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo $((total * 1000 / $(getconf CLK_TCK)))
}
switches() {
  grep -h ctxt_switches /proc/"$1"/task/*/status | awk '{s += $2} END {print s}'
}
echo "# fsbench.py n=$N: daemon CPU ms and context switches per run (gitdb: busy_poll=0, warmer included)"
for r in $(seq "$ROUNDS"); do
  for fs in bind gitdb; do
    if [ "$fs" = bind ]; then PIDS=("$BP"); else PIDS=("$GP" $(pgrep -P "$GP" || true)); fi
    c0=$(cpu_ms "${PIDS[@]}"); s0=$(switches "${PIDS[0]}")
    OUT=$(python3 "$BENCH" "$T/$fs/r$r" "$N")
    c1=$(cpu_ms "${PIDS[@]}"); s1=$(switches "${PIDS[0]}")
    printf 'round %s %-6s cpu %5d ms  switches %6d  %s\n' "$r" "$fs" $((c1 - c0)) $((s1 - s0)) "$OUT"
  done
done
