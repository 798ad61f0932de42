//! Data safety at the mount, as users meet it: several writers of one file, renames over a
//! file being read, ctl commands racing the kernel's caches, SIGTERM with files open. Real
//! `gitdb-mount` daemons driven by real programs; the timing-sensitive cases also run with
//! every CPU busy.

mod common;

use common::{BusyCpus, Mount};

/// `echo rollback > ctl` returns only once the kernel's caches agree: the dropped file is
/// gone for the very next `[ -e ]`, and making it again right away works (it used to fail
/// with ENOENT about twice in a hundred rounds under CPU load: the kernel still held the
/// dropped directory).
fn rollback_is_seen_at_once(rounds: usize) {
    let m = Mount::start(&[]);
    m.sh_ok("echo base > keep && echo commit > .gitdb/ctl");
    let script = format!(
        "i=0; while [ $i -lt {rounds} ]; do i=$((i+1)); \
           mkdir -p d && echo scratch > d/tmp || {{ echo \"create failed at $i\"; exit 1; }}; \
           echo rollback > .gitdb/ctl || exit 2; \
           if [ -e d/tmp ]; then echo \"still there at $i\"; exit 3; fi; \
         done"
    );
    let out = m.sh(&script);
    assert!(
        out.status.success(),
        "{}{}\nlog: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        m.log_text()
    );
}

#[test]
fn a_rollback_is_seen_by_the_kernel_when_ctl_returns() {
    rollback_is_seen_at_once(200);
}

#[test]
fn a_rollback_is_seen_by_the_kernel_when_ctl_returns_with_every_cpu_busy() {
    let _busy = BusyCpus::start();
    rollback_is_seen_at_once(200);
}
