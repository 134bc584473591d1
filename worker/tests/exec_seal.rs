//! `sealtune.seal_model` inside the executor child: the tensors' bytes reach the sealed deliverable
//! exactly (every dtype, non-contiguous and 0-d tensors), through tch with the `torch` feature and through
//! the buffer protocol without it; a second seal is refused; nothing is written in clear.

mod exec_support;

use exec_support::*;
use sealtune_worker::exec::ExecError;

const SEALING_SCRIPT: &str = r#"
import torch, sealtune
from sealtune import _native
print(f"tch={_native.TORCH_FEATURE}")
state = {
    "f32_t": torch.arange(6, dtype=torch.float32).reshape(2, 3).t(),
    "bf16": torch.full((3,), 1.5, dtype=torch.bfloat16),
    "i64": torch.tensor([1, -2, 3]),
    "flag": torch.tensor([True, False]),
    "scalar": torch.tensor(2.5, dtype=torch.float64),
    "empty": torch.zeros(0, 2),
}
done = sealtune.seal_model(state, extra_files={"notes.txt": "trained"})
assert done["sealed"] and done["files"] == 2, done
try:
    sealtune.seal_model(state)
except sealtune.SealtuneError as exc:
    print(f"second seal refused: {exc}")
else:
    raise AssertionError("a second seal was accepted")
"#;

#[tokio::test]
async fn seal_model_in_the_child_delivers_the_exact_tensors() {
    let task = Task::new(SEALING_SCRIPT, DATASET).with_seal();
    let (result, events) = run(&task).await;
    let outcome = result.unwrap_or_else(|e| panic!("{e}\n{:#?}", logs(&events)));
    let logs = logs(&events);
    let tch = format!(
        "tch={}",
        if cfg!(feature = "torch") {
            "True"
        } else {
            "False"
        }
    );
    assert!(logs.iter().any(|(_, m)| m == &tch), "{logs:?}");
    assert!(logs.iter().any(|(_, m)| m.contains("second seal refused")));
    assert_eq!(std::fs::read_dir(&task.spec.output_dir).unwrap().count(), 0);

    let sealed = outcome.sealed.unwrap();
    let out = sign_open_unzip(&task, &sealed, 0x33);
    assert_eq!(
        std::fs::read_to_string(out.join("output_model/notes.txt")).unwrap(),
        "trained"
    );
    let check = r#"
import sys, torch
from safetensors.torch import load_file
got = load_file(sys.argv[1])
want = {
    "f32_t": torch.arange(6, dtype=torch.float32).reshape(2, 3).t(),
    "bf16": torch.full((3,), 1.5, dtype=torch.bfloat16),
    "i64": torch.tensor([1, -2, 3]),
    "flag": torch.tensor([True, False]),
    "scalar": torch.tensor(2.5, dtype=torch.float64),
    "empty": torch.zeros(0, 2),
}
assert got.keys() == want.keys(), got.keys()
for k, v in want.items():
    assert got[k].dtype == v.dtype and got[k].shape == v.shape and torch.equal(got[k], v), k
print("ok")
"#;
    let run = std::process::Command::new(venv_python())
        .args(["-c", check])
        .arg(out.join("output_model/model.safetensors"))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

#[tokio::test]
async fn seal_model_without_worker_sealing_saves_to_the_output_dir() {
    // The worker did not ask the child to seal (it seals the output directory itself).
    let script = "import torch, sealtune\nd = sealtune.seal_model({'w': torch.ones(2)})\nassert not d['sealed']\n";
    let task = Task::new(script, DATASET);
    let (result, _) = run(&task).await;
    let outcome = result.unwrap();
    assert!(outcome.sealed.is_none());
    assert!(task.spec.output_dir.join("model.safetensors").is_file());
}

#[tokio::test]
async fn a_failing_seal_fails_the_task_and_leaves_no_partial_file() {
    let script = r#"
import torch, sealtune
from sealtune import _native
s = _native.SealStream.live()
s.add_file("a.txt", b"x")
s.add_safetensors("m.safetensors", [("w", "F32", [4])], iter([b"\0" * 8]))
"#;
    let task = Task::new(script, DATASET).with_seal();
    match run(&task).await.0 {
        Err(ExecError::ScriptFailed { reason }) => {
            assert!(reason.contains("buffer holds 8 bytes"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(!task.root().join("model.sealed").exists());
}
