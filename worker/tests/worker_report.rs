//! The signed training report (docs/PROTOCOL.md §9) through the real worker, chain and verifier:
//! a torch-free stand-in script (`worker/tests/scripts/eval_standin.py`) reports known numbers; the
//! report carries exactly those, verifies with `sealtune-verify report`, fails on any edited field,
//! is served only to the task's owner, and a script that reports nothing gets a report without
//! metrics (absent, never invented).
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use clap::Parser;
use sealtune_e2e::signer;
use sealtune_e2e::stack::{
    PARAMS, Stack, StackOptions, created, dataset_jsonl, task_body, uploaded, wait_state,
};
use sealtune_protocol::report::SignedReport;

/// A dataset zip: `data/train.jsonl` and, when `validation`, `data/validation.jsonl`.
fn dataset_zip(validation: bool) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    let opts = zip::write::SimpleFileOptions::default();
    zip.start_file("data/train.jsonl", opts).unwrap();
    zip.write_all(&dataset_jsonl(6)).unwrap();
    if validation {
        zip.start_file("data/validation.jsonl", opts).unwrap();
        zip.write_all(&dataset_jsonl(2)).unwrap();
    }
    zip.finish().unwrap();
    out.into_inner()
}

async fn report_of(stack: &Stack, who: usize, id: &str) -> reqwest::Response {
    let addr = signer(who).address().to_checksum(None);
    stack
        .http
        .get(stack.url(&format!("/v1/user/{addr}/task/{id}/report")))
        .send()
        .await
        .unwrap()
}

/// `sealtune-verify report` on `signed`: its exit code and output.
async fn verify_cli(stack: &Stack, signed: &SignedReport) -> (i32, String) {
    let file = stack.dir.path().join("report-under-test.json");
    std::fs::write(&file, serde_json::to_vec(signed).unwrap()).unwrap();
    let args = [
        "sealtune-verify".to_owned(),
        "report".to_owned(),
        "--file".to_owned(),
        file.to_str().unwrap().to_owned(),
        "--rpc".to_owned(),
        stack.anvil.endpoint.clone(),
        "--serving".to_owned(),
        stack.deployment.serving.to_string(),
        "--provider".to_owned(),
        stack.provider_address().to_string(),
    ];
    // The CLI runs its own runtime: off this test's.
    tokio::task::spawn_blocking(move || {
        let cli = sealtune_verifier::cli::Cli::parse_from(args);
        let mut out = Vec::new();
        let code = sealtune_verifier::cli::run(&cli, sealtune_e2e::stack::now(), &mut out)
            .unwrap_or_else(|e| panic!("sealtune-verify report: {e}"));
        (code, String::from_utf8_lossy(&out).into_owned())
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_carries_what_the_script_computed_and_verifies_against_the_chain() {
    let mut stack = Stack::start(
        env!("CARGO_BIN_EXE_sealtune-worker"),
        StackOptions::default(),
    )
    .await;
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts/eval_standin.py"),
        stack.dir.path().join("quick_train.py"),
    )
    .unwrap();
    stack.worker = None;
    stack.start_worker(None).await;
    // Another script is another measured config, hence another TEE signer.
    stack.ack_signer().await;
    stack.fund(2, 10, 5).await;
    stack.fund(3, 10, 5).await;

    // With validation data: the stand-in reports steps and known metrics.
    let hash = uploaded(&stack, 2, dataset_zip(true)).await;
    let id = created(&stack, 2, &task_body(2, &hash, 1, PARAMS)).await;
    let task = wait_state(
        &stack,
        2,
        &id,
        &["Delivered", "Failed"],
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(task["progress"], "Delivered", "{task}");

    // Only the owner is served the report.
    assert_eq!(report_of(&stack, 3, &id).await.status(), 404);
    let r = report_of(&stack, 2, &id).await;
    assert_eq!(r.status(), 200);
    let signed: SignedReport = r.json().await.unwrap();
    let report = signed.report().unwrap();
    let known = [
        ("base_eval_loss", 3.25),
        ("base_perplexity", 25.75),
        ("eval_loss", 1.5),
        ("perplexity", 4.5),
    ];
    assert_eq!(report.metrics, known.map(|(k, v)| (k.to_owned(), v)).into());
    assert_eq!(report.steps, Some(4));
    assert_eq!(
        report
            .loss_curve
            .iter()
            .map(|p| (p.step, p.loss))
            .collect::<Vec<_>>(),
        vec![(1, 2.5), (2, 2.0), (3, 1.75), (4, 1.625)]
    );
    assert_eq!(report.user, signer(2).address());
    assert_eq!(report.tokens_billed, task["tokens"].as_u64().unwrap_or(0));
    assert!(report.tokens_billed > 0);
    assert_eq!(format!("{:#x}", report.dataset_hash), hash.to_lowercase());

    let (code, out) = verify_cli(&stack, &signed).await;
    assert_eq!(code, 0, "{out}");
    // Any edited field fails the signature link.
    for (from, to) in [
        ("\"eval_loss\":1.5", "\"eval_loss\":1.4"),
        ("\"steps\":4", "\"steps\":40"),
        ("\"tokens_billed\":", "\"tokens_billed\":1"),
    ] {
        assert!(
            signed.document.contains(from),
            "{from} in {}",
            signed.document
        );
        let edited = SignedReport {
            document: signed.document.replacen(from, to, 1),
            ..signed.clone()
        };
        let (code, out) = verify_cli(&stack, &edited).await;
        assert_eq!(code, 1, "{from} → {to} passed:\n{out}");
        assert!(out.contains("report signature"), "{out}");
    }

    // A script that reports nothing: the report says what the worker saw and nothing more.
    let hash = uploaded(&stack, 3, dataset_zip(false)).await;
    let id = created(&stack, 3, &task_body(3, &hash, 1, PARAMS)).await;
    let task = wait_state(
        &stack,
        3,
        &id,
        &["Delivered", "Failed"],
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(task["progress"], "Delivered", "{task}");
    let signed: SignedReport = report_of(&stack, 3, &id).await.json().await.unwrap();
    for absent in ["\"metrics\":", "eval_loss", "\"steps\":", "\"loss_curve\":"] {
        assert!(
            !signed.document.contains(absent),
            "{absent} invented: {}",
            signed.document
        );
    }
    let (code, out) = verify_cli(&stack, &signed).await;
    assert_eq!(code, 0, "{out}");
}
