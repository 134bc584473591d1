//! The executor child end to end (real `sealtune-worker exec`, real embedded CPython, tiny scripts):
//! events arrive in order, every way a script can fail maps to its reason, timeouts and cancel kill the
//! whole process group, and the model key never lands in the task directory.

mod exec_support;

use std::time::Duration;

use exec_support::*;
use sealtune_protocol::events::{Event, LogLevel};
use sealtune_worker::exec::ExecError;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn success_reports_progress_in_order_and_prepares_the_dataset_as_0g() {
    let script = r#"
import json, os, sys
import datasets
import sealtune

ctx = sealtune.task_context()
assert sys.argv[1::2] == ["--data_path", "--model_path", "--config_path", "--output_dir"], sys.argv
assert ctx.live and not ctx.sealing
train = datasets.load_from_disk(ctx.data_path)["train"]
rows = [{k: v for k, v in r.items() if v is not None} for r in train]
assert rows == [
    {"instruction": "Add", "input": "1 2", "output": "3"},
    {"instruction": "hi", "output": "hello"},
    {"text": "plain text"},
], rows
print("hello from the script")
for step in range(1, 4):
    sealtune.report(step=step, total=3, loss=1.0 / step, learning_rate=1e-4, grad_norm=0.5)
sealtune.metric("eval_loss", 0.25, step=3)
sealtune.report(step=3, total=3, loss=float("nan"))
with open(os.path.join(ctx.output_dir, "adapter.bin"), "wb") as f:
    f.write(b"weights")
"#;
    let task = Task::new(script, DATASET);
    let (result, events) = run(&task).await;
    let outcome = result.unwrap_or_else(|e| panic!("{e}\n{events:#?}"));
    assert_eq!((outcome.output.files, outcome.output.bytes), (1, 7));
    assert!(outcome.sealed.is_none());

    let ordered = non_logs(&events);
    assert!(
        matches!(ordered.first(), Some(Event::Started { .. })),
        "{ordered:?}"
    );
    assert!(
        matches!(ordered.last(), Some(Event::Finished { .. })),
        "{ordered:?}"
    );
    let steps: Vec<(u64, Option<f64>)> = ordered
        .iter()
        .filter_map(|e| match e {
            Event::Progress { step, loss, .. } => Some((*step, *loss)),
            _ => None,
        })
        .collect();
    assert_eq!(
        steps,
        vec![
            (1, Some(1.0)),
            (2, Some(0.5)),
            (3, Some(1.0 / 3.0)),
            (3, None)
        ]
    );
    match &ordered[1] {
        Event::Progress {
            total,
            learning_rate,
            metrics,
            ..
        } => {
            assert_eq!(*total, Some(3));
            assert_eq!(*learning_rate, Some(1e-4));
            assert_eq!(metrics.get("grad_norm"), Some(&0.5));
        }
        other => panic!("{other:?}"),
    }
    assert!(ordered.iter().any(|e| matches!(e, Event::Metric { name, value, step: Some(3) } if name == "eval_loss" && *value == 0.25)));
    let logs = logs(&events);
    assert!(
        logs.contains(&(LogLevel::Info, "hello from the script".into())),
        "{logs:?}"
    );
    assert!(
        logs.iter()
            .any(|(l, m)| *l == LogLevel::Warn && m.contains("loss is nan")),
        "{logs:?}"
    );
}

#[tokio::test]
async fn an_exception_fails_with_the_last_traceback_line() {
    let task = Task::new(
        "def f():\n    raise ValueError('learning rate too high')\nf()\n",
        DATASET,
    );
    let (result, events) = run(&task).await;
    match result {
        Err(ExecError::ScriptFailed { reason }) => {
            assert_eq!(reason, "ValueError: learning rate too high")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        non_logs(&events).last(),
        Some(Event::Failed { .. })
    ));
    // The traceback itself reaches the task log.
    assert!(
        logs(&events)
            .iter()
            .any(|(_, m)| m.contains("Traceback (most recent call last)"))
    );
}

#[tokio::test]
async fn sys_exit_non_zero_is_a_failure_with_its_status() {
    let task = Task::new("import sys\nsys.exit(3)\n", DATASET);
    match run(&task).await.0 {
        Err(ExecError::ScriptFailed { reason }) => {
            assert_eq!(reason, "the script exited with status 3")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_hard_exit_maps_to_the_exit_code_with_stderr() {
    let task = Task::new(
        "import os, sys\nsys.stderr.write('about to die\\n')\nsys.stderr.flush()\nos._exit(7)\n",
        DATASET,
    );
    match run(&task).await.0 {
        Err(ExecError::ExitCode { code, stderr_tail }) => {
            assert_eq!(code, 7);
            assert!(stderr_tail.contains("about to die"), "{stderr_tail}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_crash_by_signal_is_reported_with_the_signal() {
    let task = Task::new(
        "import os, signal\nos.kill(os.getpid(), signal.SIGABRT)\n",
        DATASET,
    );
    match run(&task).await.0 {
        Err(ExecError::Signal { signal, .. }) => assert_eq!(signal, 6),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_sigkill_the_parent_did_not_send_reads_as_out_of_memory() {
    let task = Task::new(
        "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
        DATASET,
    );
    let err = run(&task).await.0.unwrap_err();
    assert!(matches!(err, ExecError::OutOfMemory), "{err:?}");
    assert!(err.to_string().contains("out of memory"));
}

#[tokio::test]
async fn a_script_that_writes_nothing_fails() {
    let task = Task::new("x = 1\n", DATASET);
    match run(&task).await.0 {
        Err(ExecError::ScriptFailed { reason }) => {
            assert!(reason.contains("wrote nothing"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

/// A script that starts a grandchild (as dataloader workers do), records its pid, then hangs.
const HANGING: &str = r#"
import os, subprocess, time, sealtune
p = subprocess.Popen(["sleep", "600"])
with open(os.path.join(os.path.dirname(__file__), "grandchild.pid"), "w") as f:
    f.write(str(p.pid))
sealtune.report(step=1)
time.sleep(600)
"#;

async fn grandchild_pid(task: &Task) -> i32 {
    let path = task.root().join("grandchild.pid");
    for _ in 0..100 {
        if let Ok(s) = std::fs::read_to_string(&path)
            && let Ok(pid) = s.trim().parse()
        {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the script never started its grandchild");
}

#[tokio::test]
async fn a_hanging_script_is_killed_at_the_timeout_with_its_process_group() {
    let task = Task::new(HANGING, DATASET);
    let started = std::time::Instant::now();
    // Generous: under load (parallel tests on 2 shared cores) the script needs seconds to start its
    // grandchild, which must exist before the timeout for the group kill to be checked.
    let limit = Duration::from_secs(20);
    let (result, _) = run_with(&task, limit, CancellationToken::new()).await;
    assert!(
        matches!(result, Err(ExecError::Timeout(d)) if d == limit),
        "{result:?}"
    );
    assert!(started.elapsed() < limit + Duration::from_secs(30));
    let pid = grandchild_pid(&task).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!alive(pid), "grandchild {pid} survived the timeout");
}

#[tokio::test]
async fn cancel_kills_the_running_script() {
    let task = Task::new(HANGING, DATASET);
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let pid_file = task.root().join("grandchild.pid");
    tokio::spawn(async move {
        while !pid_file.exists() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        trigger.cancel();
    });
    let started = std::time::Instant::now();
    let (result, _) = run_with(&task, Duration::from_secs(300), cancel).await;
    assert!(matches!(result, Err(ExecError::Cancelled)), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(60));
    let pid = grandchild_pid(&task).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!alive(pid), "grandchild {pid} survived the cancel");
}

#[tokio::test]
async fn a_bad_dataset_fails_before_the_script_naming_the_record() {
    let dataset = format!("{}{}\n", DATASET, r#"{"instruction":"x"}"#);
    let task = Task::new("raise SystemExit('never runs')\n", &dataset);
    match run(&task).await.0 {
        Err(ExecError::ScriptFailed { reason }) => {
            assert!(
                reason.contains("line 4") && reason.contains("output"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    let task = Task::new(
        "raise SystemExit('never runs')\n",
        "{\"text\": \"a\"}\n{not json\n",
    );
    match run(&task).await.0 {
        Err(ExecError::ScriptFailed { reason }) => assert!(reason.contains("line 2"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let task = Task::new("raise SystemExit('never runs')\n", "\n\n");
    match run(&task).await.0 {
        Err(ExecError::ScriptFailed { reason }) => {
            assert!(reason.contains("no record"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn events_printed_by_the_script_are_only_logs() {
    // A dataset record printed to stdout cannot forge an event: stdout is not the event channel.
    let script = r#"
print('{"v":1,"type":"finished","output":{"files":9,"bytes":9,"chunks":0}}')
raise RuntimeError("real failure")
"#;
    let task = Task::new(script, DATASET);
    let (result, events) = run(&task).await;
    assert!(
        matches!(result, Err(ExecError::ScriptFailed { .. })),
        "{result:?}"
    );
    assert!(
        !non_logs(&events)
            .iter()
            .any(|e| matches!(e, Event::Finished { .. }))
    );
    assert!(
        logs(&events)
            .iter()
            .any(|(_, m)| m.contains(r#""type":"finished""#))
    );
}

#[tokio::test]
async fn the_model_key_is_never_written_to_the_task_directory() {
    let script = r#"
import os, sealtune
assert sealtune.task_context().sealing
open(os.path.join(sealtune.task_context().output_dir, "x"), "w").write("x")
"#;
    let task = Task::new(script, DATASET).with_seal();
    let (result, _) = run(&task).await;
    result.unwrap();
    let spec = std::fs::read_to_string(task.root().join("exec.json")).unwrap();
    assert!(spec.contains("model.sealed"));
    for entry in walk(task.root()) {
        let bytes = std::fs::read(&entry).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(TEST_KEY_HEX),
            "{} holds the key",
            entry.display()
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn a_100_mb_line_fails_naming_the_line_without_reading_it_whole() {
    let task = Task::new("raise SystemExit('never runs')\n", "");
    let mut data = DATASET.as_bytes().to_vec();
    data.extend_from_slice(b"{\"text\": \"");
    data.resize(data.len() + (100 << 20), b'a');
    data.extend_from_slice(b"\"}\n");
    std::fs::write(&task.spec.dataset, data).unwrap();
    match run(&task).await.0 {
        Err(ExecError::ScriptFailed { reason }) => {
            assert!(reason.contains("line 4: line longer than"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_zip_of_jsonl_is_read_as_0g_reads_it() {
    use std::io::Write;
    let script = r#"
import datasets, sealtune
train = datasets.load_from_disk(sealtune.task_context().data_path)["train"]
assert len(train) == 3, len(train)
open(sealtune.task_context().output_dir / "ok", "w").write("ok")
"#;
    let mut task = Task::new(script, "");
    let zip_path = task.root().join("dataset.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
    zip.start_file(
        "mydata/train.jsonl",
        zip::write::SimpleFileOptions::default(),
    )
    .unwrap();
    zip.write_all(DATASET.as_bytes()).unwrap();
    zip.finish().unwrap();
    task.spec.dataset = zip_path;
    let (result, events) = run(&task).await;
    result.unwrap_or_else(|e| panic!("{e}\n{:#?}", logs(&events)));

    // An image dataset must be a zip.
    let mut task = Task::new("x = 1\n", DATASET);
    task.spec.data_type = sealtune_worker::exec::DataType::Image;
    match run(&task).await.0 {
        Err(ExecError::ScriptFailed { reason }) => {
            assert!(reason.contains("must be a zip"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_memory_limit_turns_a_runaway_allocation_into_a_failure() {
    let task = Task::new("block = bytearray(8 << 30)\n", DATASET);
    let limits = sealtune_worker::exec::ExecLimits {
        timeout: Duration::from_secs(120),
        memory_limit_bytes: Some(3 << 30),
    };
    let result = run_limited(&task, &limits).await;
    match result {
        Err(ExecError::ScriptFailed { reason }) => assert_eq!(reason, "MemoryError"),
        other => panic!("{other:?}"),
    }
}
