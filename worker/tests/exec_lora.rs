//! The stock LoRA script (`scripts/training/lora_causal_lm.py`) on the real SmolLM2-135M from the offline
//! cache, for a few steps inside the embedded interpreter, on a CSV dataset with a custom
//! `dataset_type` mapping (a non-JSONL format, prepared by the worker): the loss goes down, the events arrive, the
//! adapter is sealed in the child (no plaintext weights or checkpoints written anywhere in the task) and
//! the sealed file opens with the customer's tooling (`protocol::deliverable::open_file`).

mod exec_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use exec_support::*;
use sealtune_protocol::events::Event;
use tokio_util::sync::CancellationToken;

const SMOLLM2: &str = "HuggingFaceTB/SmolLM2-135M-Instruct";

/// The snapshot directory of SmolLM2 in the offline HF cache (`HF_HUB_CACHE`, set by scripts/env).
fn smollm2_dir() -> PathBuf {
    let cache = std::env::var_os("HF_HUB_CACHE").expect("run through scripts/env (HF_HUB_CACHE)");
    let config = hf_hub::Cache::new(PathBuf::from(cache))
        .model(SMOLLM2.to_owned())
        .get("config.json")
        .expect("SmolLM2 is in the offline cache (scripts/setup)");
    config.parent().unwrap().to_path_buf()
}

fn lora_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/training/lora_causal_lm.py")
}

/// The dataset as a customer exports it: a CSV with columns of their own naming (a quoted field
/// with a comma and a line break), mapped by a custom `dataset_type` (seed 003): the worker's
/// preparation formats each row with the template before the script reads it.
fn dataset() -> String {
    let rows = [
        r#"What is the capital of France?,,Paris is the capital of France."#,
        r#"Say hello,in French,Bonjour!"#,
        r#"2+2?,,4"#,
        "Color of the sky?,\"on a clear day, at noon\nin summer\",Blue.",
    ];
    let mut out = String::from("question,context,answer\n");
    for _ in 0..2 {
        for r in rows {
            out.push_str(r);
            out.push('\n');
        }
    }
    out
}

fn dataset_type() -> sealtune_protocol::dataset_type::DatasetType {
    serde_json::from_str(
        r#"{"field_instruction":"question","field_input":"context","field_output":"answer",
            "system_prompt":"Answer briefly.","system_format":"{system}\n",
            "format":"Q: {instruction} ({input})\nA:","no_input_format":"Q: {instruction}\nA:"}"#,
    )
    .unwrap()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.push(p.clone());
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn stock_lora_script_trains_smollm2_and_seals_the_adapter_in_the_child() {
    let mut task = Task::new("", &dataset()).with_seal();
    task.spec.dataset_type = Some(dataset_type());
    task.spec.script = lora_script();
    task.spec.model_path = smollm2_dir();
    std::fs::write(
        &task.spec.config_path,
        r#"{"neftune_noise_alpha": 0, "num_train_epochs": 1, "per_device_train_batch_size": 2,
            "learning_rate": 0.001, "max_steps": 6}"#,
    )
    .unwrap();
    let before: Vec<PathBuf> = files_under(task.root());

    let (result, events) =
        run_with(&task, Duration::from_secs(900), CancellationToken::new()).await;
    let outcome = result.unwrap_or_else(|e| panic!("{e}\n{:#?}", logs(&events)));

    // What the script read: the rows formatted by the template (the CSV's quoted comma and line
    // break kept), as the differential test counts them.
    let prepared = std::process::Command::new(venv_python())
        .args([
            "-c",
            "import sys, json, datasets; t = datasets.load_from_disk(sys.argv[1])['train']; \
             print(json.dumps([t.column_names, t[0], t[3], len(t)]))",
        ])
        .arg(&task.spec.data_path)
        .output()
        .unwrap();
    assert!(
        prepared.status.success(),
        "{}",
        String::from_utf8_lossy(&prepared.stderr)
    );
    let prepared: serde_json::Value = serde_json::from_slice(&prepared.stdout).unwrap();
    assert_eq!(
        prepared,
        serde_json::json!([
            ["instruction", "output"],
            {"instruction": "Answer briefly.\nQ: What is the capital of France?\nA:", "output": "Paris is the capital of France."},
            {"instruction": "Answer briefly.\nQ: Color of the sky? (on a clear day, at noon\nin summer)\nA:", "output": "Blue."},
            8
        ])
    );

    // Events: started, a progress event per step with its loss, the sealed chunk, finished.
    let ordered = non_logs(&events);
    assert!(matches!(ordered.first(), Some(Event::Started { .. })));
    assert!(matches!(ordered.last(), Some(Event::Finished { .. })));
    let losses: Vec<(u64, f64)> = ordered
        .iter()
        .filter_map(|e| match e {
            Event::Progress {
                step,
                loss: Some(loss),
                total,
                learning_rate,
                ..
            } => {
                assert_eq!(*total, Some(6));
                assert!(learning_rate.is_some());
                Some((*step, *loss))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        losses.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5, 6]
    );
    let first = losses[0].1;
    let last_two = (losses[4].1 + losses[5].1) / 2.0;
    assert!(last_two < first * 0.9, "loss did not go down: {losses:?}");
    let chunks = ordered
        .iter()
        .filter(|e| matches!(e, Event::ChunkSealed { .. }))
        .count();

    // Sealed in the child: one chunk (the adapter is ~1.8 MB), tags match.
    let sealed = outcome.sealed.expect("the script sealed the adapter");
    assert_eq!(sealed.chunks, 1);
    assert_eq!(chunks, 1);
    assert_eq!(outcome.output.chunks, 1);
    assert_eq!(outcome.output.files, 2);

    // No plaintext: the output directory is empty, and nothing new in the task but the prepared dataset,
    // the spec and the sealed file (no checkpoint, no safetensors, no .bin).
    assert_eq!(std::fs::read_dir(&task.spec.output_dir).unwrap().count(), 0);
    for path in files_under(task.root()) {
        if before.contains(&path) {
            continue;
        }
        let rel = path
            .strip_prefix(task.root())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let allowed = rel == "exec.json"
            || rel == "model.sealed"
            || rel == "output"
            || rel == "data"
            || rel.starts_with("data/");
        assert!(allowed, "unexpected file written during the run: {rel}");
        let name = path.file_name().unwrap().to_string_lossy();
        assert!(
            !name.ends_with(".safetensors")
                && !name.ends_with(".bin")
                && !name.starts_with("checkpoint"),
            "plaintext model file {rel}"
        );
    }

    // The parent signs the tag digest with the TEE key; the customer opens it.
    assert_eq!(
        std::fs::metadata(task.root().join("model.sealed"))
            .unwrap()
            .len(),
        sealed.file_len
    );
    let out = sign_open_unzip(&task, &sealed, 0x11);
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("output_model/adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["r"], 8);
    assert_eq!(config["peft_type"], "LORA");
    let weights = std::fs::read(out.join("output_model/adapter_model.safetensors")).unwrap();
    let n = u64::from_le_bytes(weights[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&weights[8..8 + n]).unwrap();
    let tensors: Vec<&String> = header
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| *k != "__metadata__")
        .collect();
    // 30 layers x 4 projections x (A, B).
    assert_eq!(tensors.len(), 240, "{tensors:?}");
    assert!(
        tensors
            .iter()
            .all(|k| k.contains("lora_A") || k.contains("lora_B"))
    );
    assert_eq!(header["__metadata__"]["format"], "pt");

    // The opened adapter loads with peft onto the base model (what the customer does next).
    let check = std::process::Command::new(venv_python())
        .args([
            "-c",
            "import sys, torch; from transformers import AutoModelForCausalLM; from peft import PeftModel; \
             base = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32); \
             m = PeftModel.from_pretrained(base, sys.argv[2]); \
             n = sum(1 for k, _ in m.named_parameters() if 'lora_' in k); assert n == 240, n; print('ok')",
        ])
        .arg(smollm2_dir())
        .arg(out.join("output_model"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

/// The same script as two gloo ranks (`exec::spawn_ranks`, HF's Trainer runs DDP unchanged): the
/// loss goes down, both ranks' steps reach the task, and rank 0 alone seals the adapter, once.
#[tokio::test]
async fn stock_lora_script_trains_as_two_gloo_ranks_and_seals_once() {
    let mut task = Task::new("", &dataset()).with_seal();
    task.spec.dataset_type = Some(dataset_type());
    task.spec.script = lora_script();
    task.spec.model_path = smollm2_dir();
    std::fs::write(
        &task.spec.config_path,
        r#"{"num_train_epochs": 1, "per_device_train_batch_size": 2, "learning_rate": 0.001, "max_steps": 6}"#,
    )
    .unwrap();
    let started = std::time::Instant::now();
    let (result, events) =
        run_ranks(&task, 2, Duration::from_secs(900), CancellationToken::new()).await;
    let outcome = result.unwrap_or_else(|e| panic!("{e}\n{:#?}", logs(&events)));
    eprintln!(
        "2 gloo ranks, 6 steps: {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let losses: Vec<(u64, f64)> = non_logs(&events)
        .iter()
        .filter_map(|e| match e {
            Event::Progress {
                step,
                loss: Some(loss),
                ..
            } => Some((*step, *loss)),
            _ => None,
        })
        .collect();
    assert_eq!(
        losses.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5, 6],
        "rank 0's steps are the task's"
    );
    let last_two = (losses[4].1 + losses[5].1) / 2.0;
    assert!(last_two < losses[0].1, "loss did not go down: {losses:?}");
    let lines = logs(&events);
    assert!(
        lines
            .iter()
            .any(|(_, l)| l.starts_with("rank 1: step 6/6, loss ")),
        "rank 1's steps reach the task log: {lines:#?}"
    );

    let sealed = outcome.sealed.expect("rank 0 sealed the adapter");
    assert_eq!(sealed.chunks, 1);
    let chunk_events = non_logs(&events)
        .iter()
        .filter(|e| matches!(e, Event::ChunkSealed { .. }))
        .count();
    assert_eq!(chunk_events, 1, "sealed once");
    assert_eq!(std::fs::read_dir(&task.spec.output_dir).unwrap().count(), 0);
    let out = sign_open_unzip(&task, &sealed, 0x12);
    assert!(out.join("output_model/adapter_model.safetensors").is_file());
}

/// `merge_adapter` with LoRA options (OPEA's `lora_config`): the stock script merges the adapter into
/// the base weights inside the child (`merge_and_unload`, in memory) and seals the whole model — its
/// safetensors, `config.json`, `generation_config.json` and the base tokenizer's files — with nothing
/// written in plaintext; the customer's decrypted folder loads with plain `transformers`
/// (`AutoModelForCausalLM` + `AutoTokenizer`, no peft) and generates. The merged weights differ from
/// the base only in the projections named by `target_modules`, so the options reached PEFT.
#[tokio::test]
async fn stock_lora_script_merges_the_adapter_and_seals_a_model_that_loads_with_plain_transformers()
{
    let mut task = Task::new("", &dataset()).with_seal();
    task.spec.dataset_type = Some(dataset_type());
    task.spec.script = lora_script();
    task.spec.model_path = smollm2_dir();
    std::fs::write(
        &task.spec.config_path,
        r#"{"neftune_noise_alpha": 0, "num_train_epochs": 1, "per_device_train_batch_size": 2,
            "learning_rate": 0.001, "max_steps": 2, "merge_adapter": true,
            "lora_config": {"r": 4, "lora_alpha": 32, "lora_dropout": 0, "target_modules": ["q_proj", "v_proj"]}}"#,
    )
    .unwrap();
    let before: Vec<PathBuf> = files_under(task.root());

    let (result, events) =
        run_with(&task, Duration::from_secs(900), CancellationToken::new()).await;
    let outcome = result.unwrap_or_else(|e| panic!("{e}\n{:#?}", logs(&events)));
    let sealed = outcome.sealed.expect("the script sealed the merged model");

    // Nothing in plaintext: only the prepared dataset, the spec and the sealed file are new.
    assert_eq!(std::fs::read_dir(&task.spec.output_dir).unwrap().count(), 0);
    for path in files_under(task.root()) {
        let rel = path.strip_prefix(task.root()).unwrap().to_string_lossy();
        assert!(
            before.contains(&path)
                || ["exec.json", "model.sealed", "output", "data"].contains(&rel.as_ref())
                || rel.starts_with("data/"),
            "unexpected file written during the run: {rel}"
        );
    }

    let out = sign_open_unzip(&task, &sealed, 0x13).join("output_model");
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "chat_template.jinja",
            "config.json",
            "generation_config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json"
        ]
    );
    let check = std::process::Command::new(venv_python())
        .args([
            "-c",
            r#"
import sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
merged_dir, base_dir = sys.argv[1], sys.argv[2]
model = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32)
tok = AutoTokenizer.from_pretrained(merged_dir)
assert not any("lora_" in k for k in model.state_dict()), "adapter tensors left"
base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).state_dict()
got = model.state_dict()
changed = sorted({k.split(".")[-2] for k in got if not torch.equal(got[k], base[k])})
assert changed == ["q_proj", "v_proj"], changed
ids = tok("The capital of France is", return_tensors="pt")
new = model.generate(**ids, max_new_tokens=5, do_sample=False)[0][ids["input_ids"].shape[1]:]
assert len(new) == 5, new
print("generated:", repr(tok.decode(new)))
"#,
        ])
        .arg(&out)
        .arg(smollm2_dir())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}
