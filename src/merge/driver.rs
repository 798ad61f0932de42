//! An external merge driver as a Custom resolver, in git's merge-driver form.
//!
//! The command is run by `sh -c` with `%O` (base), `%A` and `%B` (the two sides, in canonical
//! order — not ours/theirs) replaced by paths of temporary files holding those values, and `%P`
//! by the key's path (shell-quoted). Exit status 0 means resolved: the result is read back from
//! the `%A` file. A non-zero exit, a spawn error or running past the timeout (the process is
//! killed) falls back to KeepBoth for that key, with the reason logged. Delete vs modify is not
//! given to the driver (git does not either): KeepBoth keeps the modified value.
//!
//! The driver must be a pure function of its inputs for nodes to converge.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::merge::strategy::{ConflictCase, Resolution, Strategy};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A Custom strategy running `command` for each conflicting key, killed after `timeout`.
pub fn merge_driver(command: &str, timeout: Duration) -> Strategy {
    let command = command.to_owned();
    Strategy::custom(move |case| run_driver(&command, timeout, case))
}

fn run_driver(command: &str, timeout: Duration, case: &ConflictCase) -> Resolution {
    let (Some(a), Some(b)) = (&case.sides[0].value, &case.sides[1].value) else {
        return Resolution::KeepBoth;
    };
    let dir = std::env::temp_dir().join(format!(
        "gitdb-merge-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| -> Result<Resolution, String> {
        std::fs::create_dir_all(&dir).map_err(|e| format!("temp dir: {e}"))?;
        let write = |name: &str, data: &[u8]| -> Result<PathBuf, String> {
            let p = dir.join(name);
            std::fs::write(&p, data).map_err(|e| format!("{}: {e}", p.display()))?;
            Ok(p)
        };
        let base: &[u8] = case.base.as_ref().map_or(&[], |c| &c.data);
        let (o, pa, pb) = (
            write("O", base)?,
            write("A", &a.data)?,
            write("B", &b.data)?,
        );
        let cmd = command
            .replace("%O", &quote(&o))
            .replace("%A", &quote(&pa))
            .replace("%B", &quote(&pb))
            .replace("%P", &quote(Path::new(&case.key)));
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
        use wait_timeout::ChildExt;
        let status = match child.wait_timeout(timeout) {
            Ok(Some(status)) => status,
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("timed out after {timeout:?}"));
            }
            Err(e) => return Err(format!("wait: {e}")),
        };
        if !status.success() {
            return Err(format!("exited with {status}"));
        }
        let data = std::fs::read(&pa).map_err(|e| format!("reading %A: {e}"))?;
        Ok(Resolution::Value(data))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(r) => r,
        Err(why) => Resolution::Failed(format!("merge driver for {}: {why}", case.key)),
    }
}

/// Single-quotes a path for `sh`.
fn quote(p: &Path) -> String {
    format!("'{}'", p.to_string_lossy().replace('\'', r"'\''"))
}
