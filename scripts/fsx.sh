#!/bin/bash
# Runs the classic file-system exerciser fsx (xfstests' ltp/fsx.c) against a file on a fresh
# gitdb mount. Not part of CI. fsx is fetched and built under $FSX_DIR (default /tmp/fsx) if
# missing (its source is GPL and never committed here); without network, put fsx.c (xfstests
# ltp/fsx.c), global.h and statx.h (xfstests src/) there first.
#
#   scripts/fsx.sh [FSX OPTIONS...]      default: -q -N 100000 -S 1
#   e.g. scripts/fsx.sh -q -N 100000 -S 3 -c 10    (close/reopen 1 in 10 ops)
#        scripts/fsx.sh -q -N 100000 -S 4 -R -W    (no mmap reads/writes)
#
# fsx probes fallocate, punch hole, zero/collapse/insert range, clone, dedupe and dontcache at
# start and disables what the mount refuses (EOPNOTSUPP); copy_file_range works (the kernel
# copies through read/write). Env: GITDB_MOUNT (binary; default target/release/gitdb-mount),
# MOUNT_ARGS (extra gitdb-mount arguments, e.g. "-o threads=2").
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
bin=${GITDB_MOUNT:-$here/target/release/gitdb-mount}
dir=${FSX_DIR:-/tmp/fsx}
fsx=$dir/fsx

build_fsx() {
    mkdir -p "$dir"
    cd "$dir"
    local raw=https://raw.githubusercontent.com/kdave/xfstests/master
    for f in ltp/fsx.c src/global.h src/statx.h; do
        [ -f "$(basename $f)" ] || curl -fsSL "$raw/$f" -o "$(basename $f)"
    done
    # The autoconf header fsx expects: plain Linux/glibc, no XFS, AIO or io_uring headers.
    cat > config.h <<'EOF'
#define HAVE_SYS_TYPES_H 1
#define HAVE_SYS_STAT_H 1
#define HAVE_SYS_STATVFS_H 1
#define HAVE_SYS_TIME_H 1
#define HAVE_SYS_IOCTL_H 1
#define HAVE_SYS_WAIT_H 1
#define HAVE_MALLOC_H 1
#define HAVE_DIRENT_H 1
#define HAVE_STDLIB_H 1
#define HAVE_UNISTD_H 1
#define HAVE_ERR_H 1
#define HAVE_STRINGS_H 1
#define HAVE_ERRNO_H 1
#define HAVE_STRING_H 1
#define HAVE_SYS_FCNTL_H 1
#define HAVE_TIME_H 1
#define HAVE_WAIT_H 1
#define HAVE_SYS_PARAM_H 1
#define HAVE_LIBGEN_H 1
#define HAVE_ASSERT_H 1
#define HAVE_LINUX_FALLOC_H 1
#define HAVE_COPY_FILE_RANGE 1
#include <getopt.h>
#include <fcntl.h>
EOF
    gcc -O2 -I. -D_GNU_SOURCE -w -o fsx fsx.c
    cd - > /dev/null
}

[ -x "$fsx" ] || build_fsx
[ -x "$bin" ] || { echo "build gitdb-mount first: cargo build --release" >&2; exit 1; }

work=$(mktemp -d /tmp/gitdb-fsx.XXXXXX)
mkdir "$work/mnt" "$work/logs"
# shellcheck disable=SC2086
"$bin" "$work/mnt" --repo "$work/r.git" --node-id fsx ${MOUNT_ARGS:-} > "$work/mount.log" 2>&1 &
pid=$!
cleanup() {
    kill -TERM "$pid" 2> /dev/null || true
    wait "$pid" 2> /dev/null || true
    if mountpoint -q "$work/mnt"; then umount -l "$work/mnt"; fi
    echo "logs: $work"
}
trap cleanup EXIT
for _ in $(seq 200); do
    [ -e "$work/mnt/.gitdb/head" ] && break
    kill -0 "$pid" 2> /dev/null || { cat "$work/mount.log" >&2; exit 1; }
    sleep 0.05
done
[ -e "$work/mnt/.gitdb/head" ] || { echo "mount timed out" >&2; exit 1; }

[ $# -gt 0 ] || set -- -q -N 100000 -S 1
"$fsx" "$@" -P "$work/logs" "$work/mnt/fsx.file"
