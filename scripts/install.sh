#!/usr/bin/env bash
# Installs gitdb on this machine: the two binaries, the mount(8) helper (a symlink, so that
# `mount -t fuse.gitdb` and /etc/fstab lines work), shell completions and man pages generated
# from the binaries' own flags, the systemd unit, and the README the unit points at.
#
#   scripts/install.sh                      # builds (release) and installs under /usr/local
#   scripts/install.sh --prefix /usr        # elsewhere
#   scripts/install.sh --destdir /tmp/pkg   # into a staging tree (packaging)
#   scripts/install.sh --bin-dir DIR        # install already built binaries from DIR
#
# It needs root for the default locations. Nothing is started or enabled: see the README
# (systemd: `systemctl enable --now gitdb-mount@mnt-db`).
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=/usr/local
destdir=""
bin_dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix=$2; shift 2 ;;
    --destdir) destdir=$2; shift 2 ;;
    --bin-dir) bin_dir=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [ -z "$bin_dir" ]; then
  cargo build --release --bins
  bin_dir=target/release
fi
for b in gitdb gitdb-mount; do
  [ -x "$bin_dir/$b" ] || { echo "install.sh: no $bin_dir/$b" >&2; exit 1; }
done

root="$destdir$prefix"
install -d "$root/bin" "$destdir/sbin" "$root/share/man/man1" \
  "$root/share/bash-completion/completions" "$root/share/zsh/site-functions" \
  "$root/share/fish/vendor_completions.d" "$root/share/doc/gitdb" "$destdir/etc/systemd/system"
install -m 755 "$bin_dir/gitdb" "$bin_dir/gitdb-mount" "$root/bin/"
# mount(8) looks for /sbin/mount.fuse.gitdb; called by that name, gitdb-mount is the helper.
ln -sfn "$prefix/bin/gitdb-mount" "$destdir/sbin/mount.fuse.gitdb"

gitdb="$root/bin/gitdb"
"$gitdb" man "$root/share/man/man1"
for b in gitdb gitdb-mount; do
  "$gitdb" completions bash --bin "$b" > "$root/share/bash-completion/completions/$b"
  "$gitdb" completions zsh --bin "$b" > "$root/share/zsh/site-functions/_$b"
  "$gitdb" completions fish --bin "$b" > "$root/share/fish/vendor_completions.d/$b.fish"
done

install -m 644 README.md "$root/share/doc/gitdb/README.md"
sed -e "s|/usr/local/bin/gitdb-mount|$prefix/bin/gitdb-mount|g" \
  -e "s|file:///usr/local/share/doc/gitdb/README.md|file://$prefix/share/doc/gitdb/README.md|" \
  contrib/gitdb-mount@.service > "$destdir/etc/systemd/system/gitdb-mount@.service"
chmod 644 "$destdir/etc/systemd/system/gitdb-mount@.service"

echo "installed gitdb into ${destdir:-/}${destdir:+ (staging) }with prefix $prefix"
