//! `sealtune gateway`'s HTTP rules that need no chain and no provider: the listening and request
//! guards (loopback `Host` names only, the API key) and the refusals of bad inputs before anything
//! is sent, each in OpenAI's error shape. The flow itself is tested against the main job's stack in
//! `worker/tests/gateway_openai.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;

use sealtune_client::attest::VerifyProviderOptions;
use sealtune_client::chain::{Chain, Contracts};
use sealtune_client::flow::Client;
use sealtune_client::gateway::{Gateway, GatewayConfig, Running, SystemClock};
use serde_json::Value;

/// A gateway whose chain is nowhere (nothing here may reach it).
async fn gateway(api_key: Option<&str>) -> (Running, tempfile::TempDir) {
    let state = tempfile::tempdir().unwrap();
    let key = sealtune_client::config::parse_private_key(
        "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    )
    .unwrap();
    let chain = Chain::connect(
        "http://127.0.0.1:9",
        Contracts {
            ledger: alloy::primitives::Address::repeat_byte(1),
            serving: alloy::primitives::Address::repeat_byte(2),
        },
        Some(key),
    )
    .unwrap();
    let mut config = GatewayConfig::new(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        state.path().to_path_buf(),
        VerifyProviderOptions::default(),
    );
    config.api_key = api_key.map(str::to_owned);
    let running = Gateway::start(Client::new(chain).unwrap(), config, Arc::new(SystemClock))
        .await
        .unwrap();
    (running, state)
}

async fn error_of(resp: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(resp.status().as_u16(), status);
    let body: Value = resp.json().await.unwrap();
    let e = &body["error"];
    assert_eq!(e["code"], code, "{body:#}");
    assert!(
        e["type"].is_string() && e["message"].is_string(),
        "{body:#}"
    );
    e.clone()
}

fn upload(text: &'static str, purpose: &'static str) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new()
        .text("purpose", purpose)
        .part(
            "file",
            reqwest::multipart::Part::bytes(text.as_bytes()).file_name("../../train.jsonl"),
        )
}

#[tokio::test]
async fn a_web_page_reaching_loopback_through_dns_rebinding_is_refused() {
    let (gw, _state) = gateway(None).await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/v1/fine_tuning/jobs", gw.addr);
    let r = http
        .get(&url)
        .header("Host", "attacker.example:8015")
        .send()
        .await
        .unwrap();
    let e = error_of(r, 400, "forbidden_host").await;
    assert!(e["message"].as_str().unwrap().contains("attacker.example"));
    let ok = http.get(&url).send().await.unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    let ok = http
        .get(&url)
        .header("Host", format!("localhost:{}", gw.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
}

#[tokio::test]
async fn with_an_api_key_a_request_without_it_is_refused() {
    let (gw, _state) = gateway(Some("s3cret")).await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/v1/files", gw.addr);
    error_of(http.get(&url).send().await.unwrap(), 401, "invalid_api_key").await;
    error_of(
        http.get(&url).bearer_auth("s3cre").send().await.unwrap(),
        401,
        "invalid_api_key",
    )
    .await;
    let ok = http.get(&url).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(ok.status().as_u16(), 200);
}

#[tokio::test]
async fn bad_inputs_are_refused_in_openai_shape_before_anything_is_sent() {
    let (gw, state) = gateway(None).await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", gw.addr);
    // Not a training file.
    let r = http
        .post(format!("{base}/v1/files"))
        .multipart(upload("{\"prompt\": 1}\n", "fine-tune"))
        .send()
        .await
        .unwrap();
    let e = error_of(r, 400, "invalid_file_format").await;
    assert_eq!(e["param"], "file");
    // Another purpose.
    let r = http
        .post(format!("{base}/v1/files"))
        .multipart(upload("{\"text\": \"a\"}\n", "assistants"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(r, 400, "invalid_purpose").await["param"],
        "purpose"
    );
    // Nothing refused was kept.
    assert_eq!(
        std::fs::read_dir(state.path().join("files"))
            .unwrap()
            .count(),
        0
    );
    // A good file is stored under its id, whatever name it was sent with.
    let f: Value = http
        .post(format!("{base}/v1/files"))
        .multipart(upload("{\"text\": \"a\"}\n", "fine-tune"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(f["filename"], "train.jsonl");
    let id = f["id"].as_str().unwrap();
    assert!(state.path().join("files").join(id).is_file());
    // Its bytes are not served back (only result files are).
    let r = http
        .get(format!("{base}/v1/files/{id}/content"))
        .send()
        .await
        .unwrap();
    error_of(r, 400, "invalid_request").await;
    // A job on a file that does not exist, and hyperparameters the provider refuses.
    let job = |body: Value| {
        http.post(format!("{base}/v1/fine_tuning/jobs"))
            .json(&body)
            .send()
    };
    let r = job(serde_json::json!({"model": "m", "training_file": "file-nope"}))
        .await
        .unwrap();
    assert_eq!(
        error_of(r, 400, "invalid_training_file").await["param"],
        "training_file"
    );
    let r = job(
        serde_json::json!({"model": "m", "training_file": id, "hyperparameters": {"n_epochs": 50}}),
    )
    .await
    .unwrap();
    assert_eq!(
        error_of(r, 400, "invalid_hyperparameters").await["param"],
        "hyperparameters.n_epochs"
    );
    // No default provider and no provider in the name.
    let r = job(serde_json::json!({"model": "m", "training_file": id}))
        .await
        .unwrap();
    assert_eq!(
        error_of(r, 400, "model_not_available").await["param"],
        "model"
    );
    // Unknown jobs, in both forms.
    let r = http
        .get(format!("{base}/v1/fine_tuning/jobs/ftjob-nope"))
        .send()
        .await
        .unwrap();
    error_of(r, 404, "fine_tuning_job_not_found").await;
    let r = http
        .post(format!("{base}/v1/fine_tuning/jobs/cancel"))
        .json(&serde_json::json!({"fine_tuning_job_id": "ftjob-nope"}))
        .send()
        .await
        .unwrap();
    error_of(r, 404, "fine_tuning_job_not_found").await;
    let r = http
        .post(format!("{base}/v1/fine_tuning/jobs/retrieve"))
        .json(&serde_json::json!({"id": 1}))
        .send()
        .await
        .unwrap();
    error_of(r, 400, "invalid_request").await;
    let jobs: Value = http
        .get(format!("{base}/v1/fine_tuning/jobs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jobs["data"], serde_json::json!([]));
    assert_eq!(jobs["has_more"], false);
}
