//! TLS that ends inside the CVM (issue 19, item 3), against a real worker serving HTTPS with its
//! key derived from the (dev) attestation source, and the customer library pinning it: real rustls
//! handshakes on loopback, the real chain and contracts.
//!
//! * the customer verifies the provider over HTTPS (the attested key pinned), creates a task with a
//!   sealed dataset and a v2 request, follows it and downloads the model, all over the pinned
//!   channel;
//! * a server presenting the worker's certificate without its key fails the handshake signature;
//! * through a TCP relay on the registered address: passing the TLS stream through (the dstack
//!   gateway's passthrough) the key verifies and is pinned; terminating TLS with its own key (a
//!   man in the middle, or a TLS-terminating gateway) it is refused with the specific error, both
//!   by later requests and by `verify-provider`; publishing its own key in `tee_keys` breaks the TEE
//!   signer's signature, refused by the client and by the verifier's `TEE keys` link, which also
//!   refuses a quote fetched (`--url https://…`) over a connection that ended at another key;
//! * the key is the same after a restart with the same config and another with a changed config.
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::primitives::B256;
use sealtune_client::api::ProviderApi;
use sealtune_client::attest::{TlsCheck, VerifyProviderOptions};
use sealtune_client::chain::{Chain, Contracts};
use sealtune_client::error::ClientError;
use sealtune_client::flow::{Client, CreateTaskRequest, DatasetSource, VerifyMode};
use sealtune_client::progress::NoProgress;
use sealtune_client::tls::ProviderTls;
use sealtune_e2e::chain::*;
use sealtune_e2e::stack::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const WRONG_KEY: &str = "the provider's TLS key is not the attested one; run verify-provider again";

fn customer(stack: &Stack, who: usize) -> Client {
    let chain = Chain::connect(
        &stack.anvil.endpoint,
        Contracts {
            ledger: stack.deployment.ledger,
            serving: stack.deployment.serving,
        },
        Some(signer(who)),
    )
    .unwrap();
    Client::new(chain).unwrap()
}

fn verify_opts(nonce: u8) -> VerifyProviderOptions {
    VerifyProviderOptions {
        now: now(),
        nonce: [nonce; 32],
        allow_dev_quote: true,
        policy: Some(Box::new(
            sealtune_verifier::policy::shipped::named("dev")
                .unwrap()
                .unwrap(),
        )),
        ..Default::default()
    }
}

/// `tee_keys.tls_spki_sha256` of the worker's quote (over its plain port).
async fn attested_tls_key(stack: &Stack) -> Option<B256> {
    let q: Value = stack
        .http
        .get(stack.url("/v1/quote"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    serde_json::from_value(q["tee_keys"]["tls_spki_sha256"].clone()).unwrap()
}

/// The key the worker's HTTPS listener presents in a real handshake.
async fn served_tls_key(port: u16) -> B256 {
    let api = ProviderApi::with_tls(
        &format!("https://127.0.0.1:{port}"),
        Some(ProviderTls::Observe),
    )
    .unwrap();
    api.pending().await.unwrap();
    let seen = api.tls_keys_seen();
    assert!(
        !seen.is_empty() && seen.iter().all(|k| *k == seen[0]),
        "{seen:?}"
    );
    seen[0]
}

/// Restarts the worker with its config file edited by `edit`.
async fn restart_with(stack: &mut Stack, edit: impl FnOnce(String) -> String) {
    stack.worker = None;
    let text = std::fs::read_to_string(&stack.config_path).unwrap();
    write_private(&stack.config_path, &edit(text));
    stack.start_worker(None).await;
}

/// What the relay on the registered address does with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Forwards the TLS stream unchanged to the worker's HTTPS port (the dstack gateway's passthrough).
    Passthrough,
    /// Ends TLS with its own key and forwards the plaintext to the worker's plain port.
    Terminate,
    /// Ends TLS with its own key and answers `/v1/quote` itself: the worker's answer with its own
    /// key's hash put into `tee_keys.tls_spki_sha256`.
    Rewrite,
}

/// A TCP relay in front of the worker (the network or the host between customer and CVM).
struct Relay {
    port: u16,
    mode: Arc<Mutex<Mode>>,
    /// SHA-256 of its own certificate's SubjectPublicKeyInfo.
    spki: B256,
    /// The last `/v1/quote` body it served rewritten.
    rewritten: Arc<Mutex<Option<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Relay {
    async fn start(worker_tls: u16, worker_plain: u16) -> Relay {
        let key = rcgen::KeyPair::generate().unwrap();
        let spki = B256::from(<[u8; 32]>::from(<sha2::Sha256 as sha2::Digest>::digest(
            key.public_key_der(),
        )));
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(Mutex::new(Mode::Passthrough));
        let rewritten = Arc::new(Mutex::new(None));
        let (m, r) = (mode.clone(), rewritten.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let mode = *m.lock().unwrap();
                let (acceptor, r) = (acceptor.clone(), r.clone());
                tokio::spawn(async move {
                    let _ = relay_one(client, mode, acceptor, (worker_tls, worker_plain), spki, r)
                        .await;
                });
            }
        });
        Relay {
            port,
            mode,
            spki,
            rewritten,
            task,
        }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }
}

async fn relay_one(
    mut client: tokio::net::TcpStream,
    mode: Mode,
    acceptor: tokio_rustls::TlsAcceptor,
    (worker_tls, worker_plain): (u16, u16),
    spki: B256,
    rewritten: Arc<Mutex<Option<Vec<u8>>>>,
) -> std::io::Result<()> {
    let connect = |port: u16| tokio::net::TcpStream::connect(("127.0.0.1", port));
    match mode {
        Mode::Passthrough => {
            let mut worker = connect(worker_tls).await?;
            tokio::io::copy_bidirectional(&mut client, &mut worker).await?;
        }
        Mode::Terminate => {
            let mut tls = acceptor.accept(client).await?;
            let mut worker = connect(worker_plain).await?;
            tokio::io::copy_bidirectional(&mut tls, &mut worker).await?;
        }
        Mode::Rewrite => {
            let mut tls = acceptor.accept(client).await?;
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut b = [0u8; 1];
                if tls.read(&mut b).await? == 0 {
                    return Ok(());
                }
                head.push(b[0]);
            }
            let head = String::from_utf8_lossy(&head).to_string();
            let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
            let mut body: Value = reqwest::get(format!("http://127.0.0.1:{worker_plain}{path}"))
                .await
                .map_err(std::io::Error::other)?
                .json()
                .await
                .map_err(std::io::Error::other)?;
            if body.get("tee_keys").is_some() {
                body["tee_keys"]["tls_spki_sha256"] = spki.to_string().into();
            }
            let bytes = serde_json::to_vec(&body)?;
            *rewritten.lock().unwrap() = Some(bytes.clone());
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                bytes.len()
            );
            tls.write_all(response.as_bytes()).await?;
            tls.write_all(&bytes).await?;
            tls.shutdown().await?;
        }
    }
    Ok(())
}

/// A certificate and a key that does not belong to it.
#[derive(Debug)]
struct Mismatched(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for Mismatched {
    fn resolve(
        &self,
        _: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// A TLS server presenting the worker's certificate (read from a handshake with it) with an
/// Ed25519 key of its own, answering like the worker: its URL and the task serving it.
async fn impostor_of(worker_tls: u16) -> (String, tokio::task::JoinHandle<()>) {
    let recorder = Arc::new(sealtune_verifier::tls_key::SpkiVerifier::new(None));
    let connector = tokio_rustls::TlsConnector::from(Arc::new(
        sealtune_verifier::tls_key::client_config(recorder).unwrap(),
    ));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", worker_tls))
        .await
        .unwrap();
    let conn = connector
        .connect("sealtune-worker".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let cert = conn.get_ref().1.peer_certificates().unwrap()[0].clone();
    let own = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let key = rustls::crypto::aws_lc_rs::sign::any_supported_type(
        &rustls::pki_types::PrivateKeyDer::Pkcs8(own.serialize_der().into()),
    )
    .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_cert_resolver(Arc::new(Mismatched(Arc::new(
        rustls::sign::CertifiedKey::new(vec![cert], key),
    ))));
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let task = tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(client).await;
            });
        }
    });
    (url, task)
}

fn assert_wrong_key(err: &ClientError, relay: &Relay) {
    match err {
        ClientError::TlsKeyNotAttested { got, .. } => assert_eq!(*got, relay.spki),
        other => panic!("expected the TLS key refusal, got {other}"),
    }
    assert!(err.to_string().contains(WRONG_KEY), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_customer_works_over_the_pinned_key_and_every_other_tls_key_is_refused() {
    let mut stack = Stack::start(
        env!("CARGO_BIN_EXE_sealtune-worker"),
        StackOptions {
            tls: true,
            ..Default::default()
        },
    )
    .await;
    let tls_port = stack.tls_port.unwrap();
    stack.fund(2, 10, 5).await;
    let c = customer(&stack, 2);
    let provider = stack.provider_address();
    let attested = attested_tls_key(&stack)
        .await
        .expect("the worker publishes its TLS key");
    assert_eq!(served_tls_key(tls_port).await, attested);

    // verify-provider over HTTPS: the quote's key is the one the connection ended at; pinned.
    let v = c.verify_provider(provider, &verify_opts(1)).await.unwrap();
    assert!(v.verified, "{}", v.render_human());
    assert_eq!(v.tls, TlsCheck::Attested);
    assert_eq!(v.tls_spki_sha256, Some(attested));
    assert!(
        v.report.link("TEE keys").is_some_and(|l| l.ok),
        "{}",
        v.render_human()
    );
    assert_eq!(
        c.tls_pins
            .get(stack.deployment.serving, provider)
            .map(|p| p.tls_spki_sha256),
        Some(attested)
    );

    // A small flow over the pinned channel: sealed upload, v2 create, progress, download.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.jsonl");
    std::fs::write(&data, dataset_jsonl(6)).unwrap();
    let created = c
        .create_task(
            &CreateTaskRequest {
                provider,
                model: "quick-test-model".into(),
                dataset: DatasetSource::File(data),
                training_params: PARAMS.into(),
                dataset_type: None,
                max_fee: None,
                wait: true,
                verify: VerifyMode::Verify(verify_opts(2)),
            },
            now() * 1000,
            Arc::new(NoProgress),
        )
        .await
        .expect("create-task over the pinned HTTPS");
    assert_eq!(created.signature_form, "v2");
    assert!(created.upload.as_ref().is_some_and(|u| u.encrypted));
    let id = created.task_id;
    wait_state(&stack, 2, &id, &["Delivered"], Duration::from_secs(120)).await;
    let t = c.task(provider, Some(&id)).await.unwrap();
    assert_eq!(t.progress.as_deref(), Some("Delivered"));
    c.download_model(
        provider,
        &id,
        &dir.path().join("model.enc"),
        false,
        now() * 1000,
        &NoProgress,
    )
    .await
    .expect("download over the pinned HTTPS");

    // Another TLS server with its own key on the path: refused before any request is sent.
    let relay = Relay::start(tls_port, stack.port).await;
    relay.set(Mode::Terminate);
    let err = ProviderApi::with_tls(&relay.url(), Some(ProviderTls::Pinned(attested)))
        .unwrap()
        .pending()
        .await
        .unwrap_err();
    assert_wrong_key(&err, &relay);

    // A server that presents the worker's own certificate (public: any client sees it) without
    // holding its key: its handshake signature does not verify under the attested key.
    let impostor = impostor_of(tls_port).await;
    let err = ProviderApi::with_tls(&impostor.0, Some(ProviderTls::Pinned(attested)))
        .unwrap()
        .pending()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Unreachable { message, .. } if message.contains("invalid peer certificate: BadSignature")),
        "{err}"
    );
    drop(impostor);

    // The relay on the registered address (the host or the network routes the URL through it).
    let url = format!("https://127.0.0.1:{tls_port}");
    let relay_url = relay.url();
    restart_with(&mut stack, |t| t.replace(&url, &relay_url)).await;
    // The pin was for the old URL: nothing is sent until the provider is verified again.
    let err = c.task(provider, Some(&id)).await.unwrap_err();
    assert!(matches!(err, ClientError::TlsNotPinned { .. }), "{err}");
    // Passthrough (the dstack gateway's `s` ports): TLS still ends at the worker; verified, pinned.
    relay.set(Mode::Passthrough);
    let v = c.verify_provider(provider, &verify_opts(3)).await.unwrap();
    assert!(
        v.verified && v.tls == TlsCheck::Attested,
        "{}",
        v.render_human()
    );
    assert_eq!(v.tls_spki_sha256, Some(attested), "same config, same key");
    c.task(provider, Some(&id))
        .await
        .expect("through the passthrough relay");
    // The relay starts terminating TLS: every later request is refused...
    relay.set(Mode::Terminate);
    assert_wrong_key(&c.task(provider, Some(&id)).await.unwrap_err(), &relay);
    // ...and so is verifying again through it (the genuine quote, relayed, names another key).
    assert_wrong_key(
        &c.verify_provider(provider, &verify_opts(4))
            .await
            .unwrap_err(),
        &relay,
    );
    // `sealtune-verify quote --url https://…`: the TEE keys link compares the connection's key too.
    let tee_keys_link = |doc: &sealtune_verifier::verify::QuoteDocument| {
        sealtune_verifier::verify::verify_document(
            doc,
            &sealtune_verifier::verify::VerifyOptions {
                allow_dev_quote: true,
                ..Default::default()
            },
        )
        .link("TEE keys")
        .cloned()
        .unwrap()
    };
    let nonce = [9u8; 32];
    let direct = sealtune_verifier::cli::fetch_quote(&url, Some(&nonce))
        .await
        .unwrap();
    let link = tee_keys_link(&direct);
    assert!(
        link.ok && link.detail.contains("where this HTTPS connection ended"),
        "{link:?}"
    );
    let relayed = sealtune_verifier::cli::fetch_quote(&relay.url(), Some(&nonce))
        .await
        .unwrap();
    let link = tee_keys_link(&relayed);
    assert!(
        !link.ok && link.detail.contains("not at the attested one"),
        "{link:?}"
    );
    // Publishing its own key in tee_keys: the TEE signer never signed it.
    relay.set(Mode::Rewrite);
    let err = c
        .verify_provider(provider, &verify_opts(5))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Attestation(m) if m.contains("not signed by the TEE signer")),
        "{err}"
    );
    let served = relay.rewritten.lock().unwrap().clone().unwrap();
    let doc = sealtune_verifier::verify::QuoteDocument::from_bytes(&served).unwrap();
    let report = sealtune_verifier::verify::verify_document(
        &doc,
        &sealtune_verifier::verify::VerifyOptions {
            allow_dev_quote: true,
            ..Default::default()
        },
    );
    let link = report.link("TEE keys").unwrap();
    assert!(
        !link.ok && link.detail.contains("not signed by the TEE signer"),
        "{link:?}"
    );
    // The pin made through the passthrough is unchanged by the failed verifications.
    assert_eq!(
        c.tls_pins
            .get(stack.deployment.serving, provider)
            .map(|p| p.tls_spki_sha256),
        Some(attested)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_key_survives_a_restart_and_changes_with_the_config() {
    let mut stack = Stack::start(
        env!("CARGO_BIN_EXE_sealtune-worker"),
        StackOptions {
            tls: true,
            ..Default::default()
        },
    )
    .await;
    let port = stack.tls_port.unwrap();
    let first = attested_tls_key(&stack).await.unwrap();
    // Clients that open a connection and never start (or finish) their handshake hold no one else.
    let mut stalled = Vec::new();
    for _ in 0..4 {
        stalled.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap(),
        );
    }
    let t = std::time::Instant::now();
    assert_eq!(served_tls_key(port).await, first);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    drop(stalled);
    // No key file anywhere in the data directory holds it: derived at every start.
    restart_with(&mut stack, |t| t).await;
    assert_eq!(attested_tls_key(&stack).await, Some(first));
    assert_eq!(served_tls_key(port).await, first);
    // A changed measured config: another key (and another signer).
    restart_with(&mut stack, |t| {
        t.replace("queue_size = 5", "queue_size = 6")
    })
    .await;
    let changed = attested_tls_key(&stack).await.unwrap();
    assert_ne!(changed, first);
    assert_eq!(served_tls_key(port).await, changed);
    // HTTPS off: no TLS key is published, and the config hash is the one without the listener.
    restart_with(&mut stack, |t| {
        t.lines()
            .filter(|l| !l.starts_with("tls_listen"))
            .collect::<Vec<_>>()
            .join("\n")
            .replace(
                &format!("https://127.0.0.1:{port}"),
                &format!("http://127.0.0.1:{}", stack_port(&t)),
            )
    })
    .await;
    assert_eq!(attested_tls_key(&stack).await, None);
    let config: Value = stack
        .http
        .get(stack.url("/v1/config"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(config["document"].get("tls").is_none(), "{config}");
}

/// The plain port of the config text `t`.
fn stack_port(t: &str) -> String {
    t.lines()
        .find_map(|l| l.strip_prefix("listen = \"127.0.0.1:"))
        .map(|p| p.trim_end_matches('"').to_owned())
        .unwrap()
}

/// BENCHMARKS.md "Pinned TLS": a new connection (TCP, handshake, one request) and a request on a
/// kept-alive connection, plain HTTP vs HTTPS to the pinned key, interleaved. Not run in CI:
/// `cargo test --workspace --features sealtune-worker/torch --test tls_pinning -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement (BENCHMARKS.md), not a check"]
async fn bench_handshake_and_one_request_pinned_vs_plain() {
    let stack = Stack::start(
        env!("CARGO_BIN_EXE_sealtune-worker"),
        StackOptions {
            tls: true,
            ..Default::default()
        },
    )
    .await;
    let key = attested_tls_key(&stack).await.unwrap();
    let plain_url = format!("http://127.0.0.1:{}", stack.port);
    let tls_url = format!("https://127.0.0.1:{}", stack.tls_port.unwrap());
    const N: usize = 200;
    let mut times: [[Vec<f64>; 2]; 2] = Default::default();
    for i in 0..N + 10 {
        for (side, api) in [
            ProviderApi::new(&plain_url).unwrap(),
            ProviderApi::with_tls(&tls_url, Some(ProviderTls::Pinned(key))).unwrap(),
        ]
        .into_iter()
        .enumerate()
        {
            let t = std::time::Instant::now();
            api.pending().await.unwrap();
            let first = t.elapsed().as_secs_f64() * 1e3;
            let t = std::time::Instant::now();
            api.pending().await.unwrap();
            let again = t.elapsed().as_secs_f64() * 1e3;
            if i >= 10 {
                times[side][0].push(first);
                times[side][1].push(again);
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for (side, name) in ["plain HTTP", "HTTPS, pinned key"].iter().enumerate() {
        let first = median(&mut times[side][0]);
        let again = median(&mut times[side][1]);
        println!(
            "{name}: new connection + GET {first:.2} ms, same connection GET {again:.2} ms (median of {N})"
        );
    }
}
