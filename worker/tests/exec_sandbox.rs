//! The executor child in its sandbox (real `sealtune-worker exec`, tiny scripts): the script runs as
//! a task uid with no groups, `HOME` and `TMPDIR` in its task directory (deleted after the run), the
//! directory is root's again once the run ends, and a link the script leaves in place of the sealed
//! file is refused rather than followed. The full attack suite is `sandbox_hostile.rs`.

mod exec_support;

use std::os::unix::fs::MetadataExt as _;

use exec_support::*;
use sealtune_worker::exec::ExecError;

/// The per-task uid needs a worker running as root (as in the image and in CI): without root this
/// test fails rather than passing without checking anything.
fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the sandbox tests need root (the per-task uid): run the suite as root, as CI and the image do"
    );
}

#[tokio::test]
async fn the_script_runs_as_a_task_uid_and_the_directory_is_taken_back() {
    require_root();
    let script = r#"
import os, sealtune
home, tmp = os.environ["HOME"], os.environ["TMPDIR"]
root = os.path.dirname(sealtune.task_context().output_dir)
assert os.getuid() >= 61000 and os.getgid() == os.getuid() and os.getgroups() == [], (os.getuid(), os.getgroups())
assert home == os.path.join(root, "home") and tmp == os.path.join(root, "tmp"), (home, tmp, root)
assert not any(k.startswith("SEALTUNE_") and k not in ("SEALTUNE_EVENTS_FD", "SEALTUNE_EXEC_PARENT", "SEALTUNE_EXEC_SANDBOX") for k in os.environ), sorted(os.environ)
open(os.path.join(tmp, "scratch"), "w").write("plaintext scratch")
open(os.path.join(sealtune.task_context().output_dir, "x"), "w").write("x")
"#;
    let task = Task::new(script, DATASET);
    let (result, events) = run(&task).await;
    result.unwrap_or_else(|e| panic!("{e}\n{:#?}", logs(&events)));
    let meta = std::fs::metadata(task.root()).unwrap();
    assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o777), (0, 0, 0o700));
    assert!(!task.root().join("home").exists() && !task.root().join("tmp").exists());
}

#[tokio::test]
async fn a_link_left_in_place_of_the_sealed_file_is_refused() {
    let script = r#"
import os, torch, sealtune
done = sealtune.seal_model({"w": torch.ones(2)})
assert done["sealed"], done
sealed = os.path.join(os.path.dirname(sealtune.task_context().output_dir), "model.sealed")
os.remove(sealed)
os.symlink("/etc/hostname", sealed)
"#;
    let task = Task::new(script, DATASET).with_seal();
    match run(&task).await.0 {
        Err(ExecError::Protocol(reason)) => {
            assert!(reason.contains("is not a regular file"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}
