//! Every route of the provider API and its errors, against a real worker on a real anvil with the
//! real contracts and SQLite. (Training itself is exercised in worker_flow.rs.)
use std::time::Duration;

use sealtune_e2e::chain::*;
use sealtune_e2e::stack::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_and_their_errors() {
    let stack = Stack::start(
        env!("CARGO_BIN_EXE_sealtune-worker"),
        StackOptions {
            max_upload_bytes: 64 << 10,
            model_extra: r#"lora_ranges = { r = [1, 16], target_modules = ["q_proj", "v_proj"], merge = false }"#,
            ..Default::default()
        },
    )
    .await;
    let user = signer(2).address().to_checksum(None);
    let other = signer(3).address().to_checksum(None);

    // Models, pending, quote, metrics, openapi.
    let models: Value = stack
        .http
        .get(stack.url("/v1/model"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models[0]["name"], "quick-test-model");
    assert_eq!(models[0]["hash"], MODEL_HASH);
    assert_eq!(models[0]["dataType"], "text");
    let one: Value = stack
        .http
        .get(stack.url(&format!("/v1/model/{MODEL_HASH}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["name"], "quick-test-model");
    let r = stack
        .http
        .get(stack.url("/v1/model/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(
        r.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("nope")
    );
    assert_eq!(
        stack
            .http
            .get(stack.url("/v1/task/pending"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "0"
    );
    let quote: Value = stack
        .http
        .get(stack.url("/v1/quote"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        quote.to_string().contains("dev"),
        "a dev worker says so in its quote: {quote}"
    );
    let r = stack
        .http
        .get(stack.url("/v1/quote?nonce=zz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let openapi: Value = stack
        .http
        .get(stack.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(openapi["paths"]["/v1/user/{addr}/task"].is_object());

    // Dataset upload: good, too large (nothing kept), wrong signer.
    stack.fund(2, 10, 5).await;
    let r = upload(&stack, 2, dataset_jsonl(8)).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let up: Value = r.json().await.unwrap();
    let dataset_hash = up["datasetHash"].as_str().unwrap().to_owned();
    assert_eq!(
        dataset_hash,
        alloy::primitives::keccak256(dataset_jsonl(8)).to_string()
    );
    let r = upload(&stack, 2, vec![b'x'; 100 << 10]).await;
    assert_eq!(r.status(), 413);
    let store_files = std::fs::read_dir(stack.dir.path().join("data/store"))
        .unwrap()
        .count();
    {
        // Signed by someone else for this URL: refused, nothing kept.
        let ts = now();
        let sig = sealtune_protocol::request::sign_dataset_upload(&k256_key(3), &user, ts);
        let form = reqwest::multipart::Form::new()
            .part(
                "file",
                reqwest::multipart::Part::bytes(b"{\"text\":\"other\"}\n".to_vec())
                    .file_name("d.jsonl"),
            )
            .text("signature", sig.to_hex_v27())
            .text("timestamp", ts.to_string());
        let r = stack
            .http
            .post(stack.url(&format!("/v1/user/{user}/dataset")))
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    assert_eq!(
        std::fs::read_dir(stack.dir.path().join("data/store"))
            .unwrap()
            .count(),
        store_files
    );

    // Create task: bad JSON, unknown model, bad params, wrong signer, URL mismatch.
    let r = stack
        .http
        .post(stack.url(&format!("/v1/user/{user}/task")))
        .body("{")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let mut body = task_body(2, &dataset_hash, 1, PARAMS);
    body["preTrainedModelHash"] =
        Value::from("0x00000000000000000000000000000000000000000000000000000000000000ff");
    let r = create(&stack, 2, &body).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("quick-test-model"));
    let r = create(
        &stack,
        2,
        &task_body(2, &dataset_hash, 1, r#"{"num_train_epochs":1}"#),
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = create(
        &stack,
        2,
        &task_body(2, &dataset_hash, 1, &PARAMS.replace("0.0002", "2e-4")),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("learning_rate"));
    // LoRA options: within the model's declared `lora_ranges` (attested: GET /v1/config shows
    // them), else refused with the key, the value and the range; an unknown key names them all.
    let config: Value = stack
        .http
        .get(stack.url("/v1/config"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        config["document"]["models"][0]["lora_ranges"]["r"],
        serde_json::json!([1, 16])
    );
    for (extra, error) in [
        (
            r#","lora_config":{"r":32}}"#,
            "`r` = 32: this provider allows 1 to 16 for this model",
        ),
        (
            r#","target_modules":["q_proj","o_proj"]}"#,
            "`target_modules` = o_proj: this provider allows only the modules q_proj, v_proj",
        ),
        (
            r#","merge_adapter":true}"#,
            "`merge_adapter` = true: this provider allows only the adapter",
        ),
        (
            r#","r":300}"#,
            "`r` = 300: must be an integer from 1 to 256",
        ),
        (
            r#","lora_rank":8}"#,
            "unknown key `lora_rank`; the allowed keys are neftune_noise_alpha",
        ),
    ] {
        let params = PARAMS.replace('}', extra);
        let r = create(&stack, 2, &task_body(2, &dataset_hash, 1, &params)).await;
        assert_eq!(r.status(), 400, "{params}");
        let text = r.text().await.unwrap();
        assert!(text.contains(error), "{params}: {text}");
    }
    // A datasetType with a key it does not know is refused, naming the allowed ones.
    let mut typed = task_body(2, &dataset_hash, 1, PARAMS);
    typed["datasetType"] = serde_json::json!({"field_instruction": "q", "fromat": "{instruction}"});
    let r = create(&stack, 2, &typed).await;
    assert_eq!(r.status(), 400);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("unknown key `fromat`") && text.contains("no_input_format"),
        "{text}"
    );
    let mut forged = task_body(3, &dataset_hash, 1, PARAMS);
    forged["userAddress"] = Value::from(user.clone());
    let r = create(&stack, 2, &forged).await;
    assert_eq!(r.status(), 401, "a signature by another key is refused");
    let r = create(&stack, 3, &task_body(2, &dataset_hash, 1, PARAMS)).await;
    assert_eq!(r.status(), 400, "userAddress must match the URL");
    assert_eq!(
        stack
            .http
            .get(stack.url(&format!("/v1/user/{user}/task")))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap(),
        Value::Array(vec![])
    );

    // A good task; a second one for the same user is refused.
    let r = create(&stack, 2, &task_body(2, &dataset_hash, 1, PARAMS)).await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = create(&stack, 2, &task_body(2, &dataset_hash, 2, PARAMS)).await;
    assert_eq!(r.status(), 409);
    let t = get_task(&stack, 2, &id).await;
    assert_eq!(t["id"], id.as_str());
    assert_eq!(t["datasetHash"], dataset_hash.as_str());
    assert!(t["progress"].is_string());
    let list: Value = stack
        .http
        .get(stack.url(&format!("/v1/user/{user}/task?latest=true")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Another customer cannot see, read the log of, download or cancel it.
    for path in [
        format!("/v1/user/{other}/task/{id}"),
        format!("/v1/user/{other}/task/{id}/log"),
    ] {
        assert_eq!(
            stack
                .http
                .get(stack.url(&path))
                .send()
                .await
                .unwrap()
                .status(),
            404,
            "{path}"
        );
    }
    let r = download(&stack, 3, &id).await;
    assert_eq!(r.status(), 404);
    let uuid: uuid::Uuid = id.parse().unwrap();
    let sig = sealtune_protocol::request::sign_cancel(&k256_key(3), &uuid);
    let r = stack
        .http
        .post(stack.url(&format!("/v1/user/{other}/task/{id}/cancel")))
        .json(&serde_json::json!({"signature": sig.to_hex_v27()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Signed by another key for the right URL: 401.
    let r = stack
        .http
        .post(stack.url(&format!("/v1/user/{user}/task/{id}/cancel")))
        .json(&serde_json::json!({"signature": sig.to_hex_v27()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // The owner's download before delivery: 409 (or it was already delivered by the quick script).
    let r = download(&stack, 2, &id).await;
    assert!(r.status() == 409 || r.status() == 200, "{}", r.status());

    // Log lines are `[RFC3339] message`.
    let log = task_log(&stack, 2, &id).await;
    let first = log.lines().next().unwrap();
    assert!(
        first.starts_with("[20") && first.contains("] task accepted"),
        "{first}"
    );

    // Metrics count the routes.
    let metrics = stack
        .http
        .get(stack.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("sealtune_tasks_created_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains("route=\"/v1/user/{addr}/task\""));
    let _ = wait_state(
        &stack,
        2,
        &id,
        &["Delivered", "Failed", "Finished"],
        Duration::from_secs(120),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_before_training_and_queue_rules() {
    let mut stack = Stack::start(
        env!("CARGO_BIN_EXE_sealtune-worker"),
        StackOptions {
            queue_size: 2,
            ..Default::default()
        },
    )
    .await;
    // Slow script so the first task holds the lane.
    stack.env.push(("QUICK_SCRIPT_MODE".into(), "slow".into()));
    stack.worker = None;
    stack.start_worker(None).await;
    for who in [2, 3] {
        stack.fund(who, 10, 5).await;
    }
    let h2 = uploaded(&stack, 2, dataset_jsonl(4)).await;
    let h3 = uploaded(&stack, 3, dataset_jsonl(5)).await;
    let a = created(&stack, 2, &task_body(2, &h2, 1, PARAMS)).await;
    // Non-empty queue without wait: refused.
    let mut body = task_body(3, &h3, 1, PARAMS);
    body["wait"] = Value::Bool(false);
    assert_eq!(create(&stack, 3, &body).await.status(), 409);
    let r = create(&stack, 3, &task_body(3, &h3, 1, PARAMS)).await;
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    let b = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Task b waits behind a: cancel it (signed), it fails with the reason, nothing charged.
    let other = signer(3).address().to_checksum(None);
    let sig = sealtune_protocol::request::sign_cancel(&k256_key(3), &b.parse().unwrap());
    let r = stack
        .http
        .post(stack.url(&format!("/v1/user/{other}/task/{b}/cancel")))
        .json(&serde_json::json!({"signature": sig.to_hex_v27()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let t = get_task(&stack, 3, &b).await;
    assert_eq!(t["progress"], "Failed");
    assert_eq!(t["failReason"], "cancelled by the customer");
    // Task a is trained and delivered: cancel is refused (a cancel during training is
    // `worker_settle.rs`'s).
    wait_state(&stack, 2, &a, &["Delivered"], Duration::from_secs(60)).await;
    let user = signer(2).address().to_checksum(None);
    let sig = sealtune_protocol::request::sign_cancel(&k256_key(2), &a.parse().unwrap());
    let r = stack
        .http
        .post(stack.url(&format!("/v1/user/{user}/task/{a}/cancel")))
        .json(&serde_json::json!({"signature": sig.to_hex_v27()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("can only be cancelled before it is trained"),
        "{e}"
    );
}

/// `/openapi.json` route by route against the running router: every documented path answers each
/// documented method (never the router's "no route" 404 or a 405), and every method it does not
/// document is refused with 405. (That the router mounts no path the document lacks is the unit test
/// `api::tests::openapi_documents_exactly_the_mounted_paths`.) Every answer carries `x-request-id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_documents_every_route_and_method_of_the_router() {
    let stack = Stack::start(env!("CARGO_BIN_EXE_sealtune-worker"), Default::default()).await;
    let user = signer(2).address().to_checksum(None);
    let doc: Value = stack
        .http
        .get(stack.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 14, "{paths:?}");
    for (path, ops) in paths {
        let url = path
            .replace("{addr}", &user)
            .replace("{id}", "6f6b7a1e-0b7c-4a52-9d8e-3f1c2b4a5d6e")
            .replace("{name}", "no-such-model");
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            let r = stack
                .http
                .request(method.parse().unwrap(), stack.url(&url))
                .send()
                .await
                .unwrap();
            let status = r.status();
            assert!(
                r.headers().contains_key("x-request-id"),
                "{method} {path}: no x-request-id"
            );
            let body = r.text().await.unwrap();
            if ops.get(method.to_lowercase()).is_some() {
                assert_ne!(status, 405, "{method} {path} is documented: {body}");
                assert!(
                    !(status == 404 && body.is_empty()),
                    "{method} {path} is documented but no route answers it"
                );
            } else {
                assert_eq!(status, 405, "{method} {path} is not documented: {body}");
            }
        }
    }
    // A path nobody routes: the router's 404, with an id too.
    let r = stack.http.get(stack.url("/v1/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().contains_key("x-request-id"));
}

/// A real internal failure (the worker's tables dropped under it) answers 500 with the generic
/// message and the request id only; the worker's log has the id with the cause. A customer's mistake
/// on the same worker keeps its precise message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_failure_answers_a_request_id_and_logs_the_cause() {
    use sqlx::{ConnectOptions, Connection};

    let stack = Stack::start(env!("CARGO_BIN_EXE_sealtune-worker"), Default::default()).await;
    let user = signer(2).address().to_checksum(None);
    let tasks_url = stack.url(&format!("/v1/user/{user}/task"));
    let r = stack.http.get(&tasks_url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let ok_id = r.headers()["x-request-id"].to_str().unwrap().to_owned();

    let mut db = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(stack.dir.path().join("data/worker.sqlite"))
        .connect()
        .await
        .unwrap();
    for table in ["task_log", "tasks"] {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {table}")))
            .execute(&mut db)
            .await
            .unwrap();
    }
    db.close().await.unwrap();

    let r = stack.http.get(&tasks_url).send().await.unwrap();
    assert_eq!(r.status(), 500);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(id, ok_id, "each request has its own id");
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "error": format!("internal error (request id {id})"),
            "requestId": id,
        }),
        "nothing internal in the answer"
    );

    // The cause is in the worker's log, on the line with the id.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let log = stack.worker_log();
        if log
            .lines()
            .any(|l| l.contains(&id) && l.contains("no such table: tasks"))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no log line with {id} and the cause:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A customer's mistake still says what is wrong, without a request id in the body.
    let r = stack
        .http
        .get(stack.url("/v1/user/not-an-address/task"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().contains_key("x-request-id"));
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("not-an-address"),
        "{body}"
    );
    assert!(body.get("requestId").is_none(), "{body}");
}
