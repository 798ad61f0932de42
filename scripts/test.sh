#!/usr/bin/env bash
# The whole test suite: installs what the tests drive (git, fuse3, python3, util-linux's
# mount/unshare/setpriv, systemd-analyze, node_exporter, iproute2, libfaketime), then runs every unit, property and integration test.
# Usage: scripts/test.sh [extra cargo test args]
#
# Needs root: the tests mount real FUSE filesystems, install /sbin/mount.fuse.gitdb for the
# length of tests/fstab.rs, and run tests/nonroot.rs as uid 65534 in mount namespaces of their
# own. Tests whose names end in `with_every_cpu_busy` run a busy loop on every CPU while they
# last (timing-sensitive checks must hold on a loaded machine): do not benchmark meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "scripts/test.sh: run as root (sudo scripts/test.sh): the tests mount FUSE filesystems," \
    "bind-mount device nodes and install /sbin/mount.fuse.gitdb" >&2
  exit 1
fi

need=()
command -v git >/dev/null || need+=(git)
command -v python3 >/dev/null || need+=(python3)
command -v fusermount3 >/dev/null || need+=(fuse3)
command -v systemd-analyze >/dev/null || need+=(systemd) # tests/systemd.rs checks the unit
command -v mount >/dev/null || need+=(mount)              # tests/fstab.rs: mount -t, mount -a
command -v prometheus-node-exporter >/dev/null || need+=(prometheus-node-exporter) # tests/metrics.rs
command -v ip >/dev/null || need+=(iproute2)            # tests/partition.rs: ip netns, veth
command -v faketime >/dev/null || need+=(faketime)        # tests/partition.rs: a node an hour ahead
for t in unshare setpriv nsenter; do                      # tests/nonroot.rs
  command -v $t >/dev/null || { need+=(util-linux); break; }
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Tests run in parallel; each makes its own temp dirs, ports and mounts. Benchmarks are not run
# here (scripts/bench-*.sh); clippy --all-targets in .ci/run still compiles them.
exec cargo test "$@"
