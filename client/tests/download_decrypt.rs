//! Download, check, acknowledge and decrypt a deliverable sealed with `sealtune_protocol`, on a real
//! chain; the provider's byte path is the test fixture of `common` (the worker comes later).
//! Every failed check leaves the deliverable unacknowledged and no file behind.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use alloy::primitives::{U256, keccak256};
use alloy::signers::local::PrivateKeySigner;
use common::Env;
use sealtune_client::attest::VerifyProviderOptions;
use sealtune_client::error::exit;
use sealtune_client::progress::NoProgress;
use sealtune_client::{ClientError, flow::Client};
use sealtune_e2e::ether;
use sealtune_e2e::provider_fixture::{DevQuote, FIXTURE_CONFIG_HASH, now_ms};
use sealtune_e2e::trials::{self, Isolation};
use sealtune_protocol::deliverable::{self, SealOptions};

/// One anvil with the contracts and the provider fixture for the whole binary; each case starts from the
/// freshly registered state with a fixture that has recorded nothing.
fn main() -> std::process::ExitCode {
    trials::run(
        Env::new(),
        sealtune_e2e::cases![
            download_is_checked_then_acknowledged_and_decrypts_after_settlement,
            tampered_download_is_deleted_and_not_acknowledged,
            model_signed_by_another_tee_is_not_acknowledged,
            decryption_failure_leaves_no_plaintext,
            verify_provider_binds_the_on_chain_signer_and_refuses_dev_quotes_by_default,
            verify_provider_names_the_policy_link_that_fails,
            verify_provider_fetches_collateral_from_a_pccs_through_the_cache,
        ],
        Isolation::SnapshotAnd(|env| &env.anvil, Env::reset),
    )
}

const TASK: &str = "5d8a1c44-96b2-4bd1-8f2e-0c6de9a4b7a1";

/// A model directory sealed like the worker does: zip, encrypt, sign the tags with `tee`.
fn seal(dir: &Path, tee: &PrivateKeySigner) -> (PathBuf, deliverable::DeliverableKey, Vec<u8>) {
    let model = dir.join("model");
    std::fs::create_dir_all(model.join("sub")).unwrap();
    std::fs::write(model.join("adapter_config.json"), br#"{"r": 8}"#).unwrap();
    let weights: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(model.join("sub/adapter_model.safetensors"), &weights).unwrap();
    let sealed = dir.join("sealed.bin");
    let s = deliverable::seal_dir_to_file(
        &model,
        &sealed,
        &mut rand_core::OsRng,
        &SealOptions::default(),
    )
    .unwrap();
    deliverable::finish(
        &sealed,
        &deliverable::sign_tags(tee.credential(), &s.tag_digest),
    )
    .unwrap();
    let root = keccak256(std::fs::read(&sealed).unwrap()).to_vec();
    (sealed, s.key, root)
}

async fn funded(env: &Env) -> Client {
    let c = env.client(&env.user);
    c.chain.create_account(ether(3), "").await.unwrap();
    c.chain
        .transfer_fund(env.provider.address(), ether(2), None)
        .await
        .unwrap();
    c
}

async fn download_is_checked_then_acknowledged_and_decrypts_after_settlement(env: &Env) {
    let c = funded(env).await;
    let user = env.user.address();
    let provider = env.provider.address();
    let work = tempfile::tempdir().unwrap();
    let (sealed, key, root) = seal(work.path(), &env.tee);
    env.deliver(user, TASK, &root).await;
    env.fixture.serve_file(TASK, &sealed);

    let out = work.path().join("dl");
    std::fs::create_dir(&out).unwrap();
    let d = c
        .download_model(provider, TASK, &out, true, now_ms(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(d.path, out.join(format!("model_{TASK}.enc")));
    assert_eq!(
        std::fs::read(&d.path).unwrap(),
        std::fs::read(&sealed).unwrap()
    );
    assert_eq!(d.check.keccak.as_slice(), root.as_slice());
    assert_eq!(d.check.tag_signer, env.tee.address());
    assert!(d.acknowledged && d.acknowledgement.is_some());
    assert!(c.deliverable(provider, TASK).await.unwrap().acknowledged);

    // Before settlement the key is not on chain: not ready, nothing written.
    let zip = work.path().join("model.zip");
    let e = c
        .decrypt_model(provider, TASK, &d.path, &zip, None, &NoProgress)
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), exit::NOT_READY, "{e}");
    assert!(!zip.exists());

    // The provider settles with the key wrapped for the customer's public key.
    let customer_pk = k256::PublicKey::from(env.user.credential().verifying_key());
    let secret = sealtune_protocol::ecies::wrap_key(&mut rand_core::OsRng, &customer_pk, &key);
    let balance_before = c
        .chain
        .account(user, provider)
        .await
        .unwrap()
        .unwrap()
        .balance;
    let fee = U256::from(12_345u64);
    env.settle_signed(
        user,
        TASK,
        &root,
        &secret,
        U256::from(now_ms()) * U256::from(10_000u64) + U256::from(40u8),
        fee,
    )
    .await;
    let settled = c
        .wait_settled(
            provider,
            TASK,
            std::time::Duration::from_secs(5),
            std::time::Duration::from_millis(100),
        )
        .await
        .unwrap();
    assert!(settled.settled);
    assert_eq!(
        c.chain
            .account(user, provider)
            .await
            .unwrap()
            .unwrap()
            .balance,
        balance_before - fee,
        "the customer paid exactly the fee"
    );

    let unzip_dir = work.path().join("model-out");
    let m = c
        .decrypt_model(provider, TASK, &d.path, &zip, Some(&unzip_dir), &NoProgress)
        .await
        .unwrap();
    assert_eq!(m.tee_signer, env.tee.address());
    assert_eq!(m.files, Some(2));
    assert_eq!(
        std::fs::read(unzip_dir.join("output_model/sub/adapter_model.safetensors")).unwrap(),
        std::fs::read(work.path().join("model/sub/adapter_model.safetensors")).unwrap()
    );
    assert_eq!(
        std::fs::read(unzip_dir.join("output_model/adapter_config.json")).unwrap(),
        br#"{"r": 8}"#
    );

    // Another customer's key cannot open it.
    let other = env.client(&env.user2);
    let e =
        sealtune_client::model::unwrap_secret(other.chain.signer().unwrap().credential(), &secret)
            .unwrap_err();
    assert!(matches!(e, ClientError::Ecies(_)), "{e}");
    // Another customer has no such deliverable: refused before any download.
    let downloads = env.fixture.downloads();
    let e = other
        .download_model(provider, TASK, &out, true, now_ms(), &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::NoSubAccount(_)), "{e}");
    assert_eq!(env.fixture.downloads(), downloads);
    // The customer's own download carried a signature the fixture verified with the protocol crate.
    assert_eq!(downloads, 1);
}

async fn tampered_download_is_deleted_and_not_acknowledged(env: &Env) {
    let c = funded(env).await;
    let user = env.user.address();
    let provider = env.provider.address();
    let work = tempfile::tempdir().unwrap();
    let (sealed, _key, root) = seal(work.path(), &env.tee);
    env.deliver(user, TASK, &root).await;
    let mut bytes = std::fs::read(&sealed).unwrap();
    let n = bytes.len();
    bytes[n - 100] ^= 1;
    let tampered = work.path().join("tampered.bin");
    std::fs::write(&tampered, &bytes).unwrap();
    env.fixture.serve_file(TASK, &tampered);

    let dest = work.path().join("model.enc");
    let e = c
        .download_model(provider, TASK, &dest, true, now_ms(), &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::RootHashMismatch { .. }), "{e}");
    assert_eq!(e.exit_code(), exit::VERIFICATION);
    assert!(!dest.exists());
    assert!(!work.path().join("model.enc.part").exists());
    assert!(!c.deliverable(provider, TASK).await.unwrap().acknowledged);
}

async fn model_signed_by_another_tee_is_not_acknowledged(env: &Env) {
    let c = funded(env).await;
    let user = env.user.address();
    let provider = env.provider.address();
    let work = tempfile::tempdir().unwrap();
    // Sealed and announced consistently, but signed by a key that is not the service's TEE signer.
    let impostor = PrivateKeySigner::random();
    let (sealed, _key, root) = seal(work.path(), &impostor);
    env.deliver(user, TASK, &root).await;
    env.fixture.serve_file(TASK, &sealed);

    let dest = work.path().join("model.enc");
    let e = c
        .download_model(provider, TASK, &dest, true, now_ms(), &NoProgress)
        .await
        .unwrap_err();
    match &e {
        ClientError::Deliverable(deliverable::OpenError::WrongSigner {
            expected,
            recovered,
        }) => {
            assert_eq!(*expected, env.tee.address());
            assert_eq!(*recovered, impostor.address());
        }
        other => panic!("expected a wrong-signer error, got {other}"),
    }
    assert!(!dest.exists());
    assert!(!c.deliverable(provider, TASK).await.unwrap().acknowledged);

    // Acknowledging that file explicitly runs the same checks and refuses too.
    assert!(
        c.acknowledge_model(provider, TASK, Some(&sealed))
            .await
            .is_err()
    );
    assert!(!c.deliverable(provider, TASK).await.unwrap().acknowledged);
}

async fn decryption_failure_leaves_no_plaintext(env: &Env) {
    let c = funded(env).await;
    let user = env.user.address();
    let provider = env.provider.address();
    let work = tempfile::tempdir().unwrap();
    let (sealed, _key, root) = seal(work.path(), &env.tee);
    env.deliver(user, TASK, &root).await;
    env.fixture.serve_file(TASK, &sealed);
    let d = c
        .download_model(provider, TASK, work.path(), true, now_ms(), &NoProgress)
        .await
        .unwrap();
    // The provider settles with a wrapped key that is not the file's key.
    let customer_pk = k256::PublicKey::from(env.user.credential().verifying_key());
    let wrong = deliverable::DeliverableKey::from_bytes([7u8; 32]);
    let secret = sealtune_protocol::ecies::wrap_key(&mut rand_core::OsRng, &customer_pk, &wrong);
    env.settle_signed(
        user,
        TASK,
        &root,
        &secret,
        U256::from(10u8),
        U256::from(1u8),
    )
    .await;

    let zip = work.path().join("model.zip");
    let e = c
        .decrypt_model(provider, TASK, &d.path, &zip, None, &NoProgress)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Deliverable(deliverable::OpenError::WrongKey)
        ),
        "{e}"
    );
    assert!(!zip.exists());
    let leftovers: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".sealtune-decrypt-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary plaintext left: {leftovers:?}"
    );
}

/// The dev policy, with the fixture's config hash pinned (what `--policy dev --config-hash` gives).
fn verify_opts(allow_dev: bool) -> VerifyProviderOptions {
    VerifyProviderOptions {
        now: now_ms() / 1000,
        nonce: [0x5a; 32],
        allow_dev_quote: allow_dev,
        policy: Some(Box::new(dev_policy())),
        config_hashes: vec![FIXTURE_CONFIG_HASH.0],
        ..Default::default()
    }
}

fn dev_policy() -> sealtune_verifier::policy::Policy {
    sealtune_verifier::policy::shipped::named("dev")
        .unwrap()
        .unwrap()
}

/// The detail of the failed required link `name`.
fn failed_link(v: &sealtune_client::attest::ProviderVerification, name: &str) -> String {
    v.report
        .links
        .iter()
        .find(|l| l.name == name && l.required && !l.ok)
        .map(|l| l.detail.clone())
        .unwrap_or_default()
}

async fn verify_provider_binds_the_on_chain_signer_and_refuses_dev_quotes_by_default(env: &Env) {
    let c = env.client(&env.user);
    let provider = env.provider.address();

    let v = c
        .verify_provider(provider, &verify_opts(true))
        .await
        .unwrap();
    assert!(v.verified, "{}", v.render_human());
    assert!(v.dev_quote && v.fresh);
    assert_eq!(v.tee_signer, env.tee.address());
    assert!(v.render_human().contains("INSECURE DEV ATTESTATION"));

    // A policy that requires GPU evidence: this provider serves none.
    let mut gpu = verify_opts(true);
    gpu.policy = Some(Box::new(
        sealtune_verifier::policy::Policy::from_toml("gpu.toml", "[gpu]\nrequired = true\n")
            .unwrap(),
    ));
    let v = c.verify_provider(provider, &gpu).await.unwrap();
    assert!(!v.verified, "{}", v.render_human());
    assert!(
        failed_link(&v, "policy gpu").contains("GPU evidence required"),
        "{}",
        v.render_human()
    );

    let v = c
        .verify_provider(provider, &verify_opts(false))
        .await
        .unwrap();
    assert!(
        !v.verified,
        "a dev quote must be refused without --allow-dev-quote"
    );
    let e = v.require_verified().unwrap_err();
    assert_eq!(e.exit_code(), exit::VERIFICATION);

    // A provider that ignores the nonce (0G layout) proves no freshness: refused unless accepted
    // explicitly.
    env.fixture.set_quote_mode(DevQuote::AsciiLayout);
    let v = c
        .verify_provider(provider, &verify_opts(true))
        .await
        .unwrap();
    assert!(!v.verified && !v.fresh, "{}", v.render_human());
    assert!(
        failed_link(&v, "nonce").contains("cannot prove freshness"),
        "{}",
        v.render_human()
    );
    let mut lenient = verify_opts(true);
    lenient.allow_no_freshness = true;
    let v = c.verify_provider(provider, &lenient).await.unwrap();
    assert!(v.verified && !v.fresh, "{}", v.render_human());

    // The relay attack: the answer is an honest document for the attacker's nonce.
    env.fixture.set_quote_mode(DevQuote::Relayed);
    for opts in [verify_opts(true), lenient.clone()] {
        let v = c.verify_provider(provider, &opts).await.unwrap();
        assert!(!v.verified && !v.fresh, "{}", v.render_human());
        assert!(
            failed_link(&v, "signer binding").contains("stale or relayed"),
            "{}",
            v.render_human()
        );
        assert!(
            failed_link(&v, "nonce").contains("stale or relayed"),
            "{}",
            v.render_human()
        );
    }

    env.fixture.set_quote_mode(DevQuote::WrongSigner);
    let v = c
        .verify_provider(provider, &verify_opts(true))
        .await
        .unwrap();
    assert!(!v.verified, "{}", v.render_human());
    assert!(v.render_human().contains("signer"));
}

/// The policy links, each refusal naming its link and reason: the release policy (the default)
/// is refused for a dev answer, the dev policy for another config hash; without any policy the
/// check passes only when asked (`--no-policy`), saying UNPINNED.
async fn verify_provider_names_the_policy_link_that_fails(env: &Env) {
    let c = env.client(&env.user);
    let provider = env.provider.address();

    let v = c
        .verify_provider(provider, &verify_opts(true))
        .await
        .unwrap();
    assert!(v.verified, "{}", v.render_human());
    assert!(v.report.link("policy config").unwrap().ok);
    assert!(v.report.link("compose hash").unwrap().ok);
    assert!(v.report.link("event log").unwrap().detail.contains("dev"));

    // The shipped release policy is for TDX quotes.
    let release = VerifyProviderOptions {
        policy: None,
        ..verify_opts(true)
    };
    let v = c.verify_provider(provider, &release).await.unwrap();
    assert!(!v.verified, "{}", v.render_human());
    assert!(
        failed_link(&v, "policy").contains("is for TDX quotes"),
        "{}",
        v.render_human()
    );

    // Another config hash pinned: the config link fails, naming the pin.
    let other = VerifyProviderOptions {
        config_hashes: vec![[0x0d; 32]],
        ..verify_opts(true)
    };
    let v = c.verify_provider(provider, &other).await.unwrap();
    assert!(!v.verified, "{}", v.render_human());
    let detail = failed_link(&v, "policy config");
    assert!(
        detail.contains(&hex::encode(FIXTURE_CONFIG_HASH))
            && detail.contains("is not one of")
            && detail.contains("--config-hash"),
        "{}",
        v.render_human()
    );

    // The dev policy without a pin: passes, and says the config hash is UNPINNED.
    let unpinned = VerifyProviderOptions {
        config_hashes: Vec::new(),
        ..verify_opts(true)
    };
    let v = c.verify_provider(provider, &unpinned).await.unwrap();
    assert!(v.verified, "{}", v.render_human());
    assert!(
        v.render_human().contains("UNPINNED config hash"),
        "{}",
        v.render_human()
    );

    // No policy at all: only with --no-policy, and the report says UNPINNED.
    let none = VerifyProviderOptions {
        policy: None,
        no_policy: true,
        config_hashes: Vec::new(),
        ..verify_opts(true)
    };
    let v = c.verify_provider(provider, &none).await.unwrap();
    assert!(v.verified, "{}", v.render_human());
    let l = v.report.link("policy").unwrap();
    assert!(!l.required && l.detail.contains("UNPINNED"), "{l:?}");
}

/// A hardware quote without `--collateral`: the client fetches the collateral from a PCCS (a
/// loopback stand-in serving the fixture collateral: there is no network here) and caches it; offline,
/// the cache alone serves, and an empty cache is an error that says so.
async fn verify_provider_fetches_collateral_from_a_pccs_through_the_cache(env: &Env) {
    /// `tdx_quote`'s collateral is valid at this time.
    const AT: u64 = 1_750_332_747;
    let c = env.client(&env.user);
    let provider = env.provider.address();
    env.fixture.set_quote_mode(DevQuote::RecordedHardware);
    let collateral = sealtune_verifier::dcap::parse_collateral(&sealtune_e2e::fixture_bytes(
        "tdx/tdx_quote_collateral.json",
    ))
    .unwrap();
    let pccs = sealtune_e2e::http::pccs(collateral);
    let cache = tempfile::tempdir().unwrap();
    let opts = |pccs_url: Option<String>, offline: bool| VerifyProviderOptions {
        now: AT,
        nonce: [0x5a; 32],
        collateral_source: sealtune_verifier::collateral::CollateralSource {
            pccs_url,
            cache_dir: Some(cache.path().to_path_buf()),
            offline,
        },
        ..Default::default()
    };

    let v = c
        .verify_provider(provider, &opts(Some(pccs.url.clone()), false))
        .await
        .unwrap();
    let dcap = v.report.link("DCAP (dcap-qvl)").unwrap();
    assert!(dcap.ok, "{}", v.render_human());
    assert!(
        pccs.requests()
            .iter()
            .any(|r| r.contains("/tdx/certification/v4/tcb")),
        "{:?}",
        pccs.requests()
    );
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 1);
    // The recorded quote binds no signer and no nonce: refused, naming those links.
    assert!(!v.verified);
    assert!(!v.report.link("signer binding").unwrap().ok);
    assert!(failed_link(&v, "nonce").contains("cannot prove freshness"));

    // Offline: the cache serves, no request reaches the PCCS.
    let before = pccs.requests().len();
    let v = c
        .verify_provider(provider, &opts(None, true))
        .await
        .unwrap();
    assert!(
        v.report.link("DCAP (dcap-qvl)").unwrap().ok,
        "{}",
        v.render_human()
    );
    assert_eq!(pccs.requests().len(), before);

    // An SGX enclave's quote is not a provider's: the TEE type link refuses it.
    env.fixture.set_quote_mode(DevQuote::RecordedSgx);
    let v = c
        .verify_provider(provider, &opts(Some(pccs.url.clone()), false))
        .await
        .unwrap();
    assert!(!v.verified);
    assert!(
        failed_link(&v, "TEE type").contains("a provider's quote must be TDX"),
        "{}",
        v.render_human()
    );
    env.fixture.set_quote_mode(DevQuote::RecordedHardware);

    // Offline with an empty cache: an attestation error that says why.
    let empty = tempfile::tempdir().unwrap();
    let mut o = opts(None, true);
    o.collateral_source.cache_dir = Some(empty.path().to_path_buf());
    let e = c.verify_provider(provider, &o).await.unwrap_err();
    assert_eq!(e.exit_code(), exit::VERIFICATION, "{e}");
    assert!(e.to_string().contains("no cached collateral"), "{e}");
}
