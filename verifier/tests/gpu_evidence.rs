//! The GPU half of the chain of trust (docs/verifier.md, "GPU evidence"): the real H100 sample
//! passes at its time, and every tamper fails on the right link. Synthetic NVIDIA-shaped evidence
//! (sealtune_e2e::gpu) covers the bound path: several GPUs, nonce derived from the verifier's,
//! payload hash in the attestation document.

use sealtune_e2e::gpu::{SYNTHETIC_GPU_AT, synthetic_gpus};
use sealtune_protocol::attestation::{AttestationDocument, gpu_nonce};
use sealtune_protocol::gpu::{CcState, GpuEvidence, NvidiaPayload};
use sealtune_protocol::{Address, B256};
use sealtune_verifier::gpu::chain::{ChainVerifier, split_chain};
use sealtune_verifier::gpu::{
    GpuCheck, GpuInputs, ReferenceValues, spdm::Report, verify_gpu, verify_payload,
};
use sealtune_verifier::policy::Policy;
use sealtune_verifier::verify::{QuoteDocument, VerifyOptions, verify_document};

/// 2024-06-01: inside the sample chain's window (2022-03-01 to 9999-12-31).
const AT: u64 = 1_717_200_000;
const SAMPLE_NONCE: &str = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";

fn sample() -> Vec<u8> {
    let text = String::from_utf8(sealtune_e2e::fixture_bytes(
        "nvidia/hopperAttestationReport.txt",
    ))
    .unwrap();
    hex::decode(text.trim()).unwrap()
}

fn chain(case: u8) -> Vec<u8> {
    sealtune_e2e::fixture_bytes(&format!("nvidia/hopper_cert_chain_case{case}.txt"))
}

fn nonce() -> [u8; 32] {
    hex::decode(SAMPLE_NONCE).unwrap().try_into().unwrap()
}

fn check(evidence: &[u8], certificate: &[u8], now: u64) -> GpuCheck {
    let mut chains = ChainVerifier::nvidia(now).unwrap();
    verify_gpu(0, evidence, certificate, &nonce(), &mut chains, None)
}

/// The claims trustee derives from the sample, as reference values.
fn sample_reference() -> ReferenceValues {
    let claims: serde_json::Value = serde_json::from_slice(&sealtune_e2e::fixture_bytes(
        "nvidia/hopperAttestationReport-claims.txt",
    ))
    .unwrap();
    let mut r = ReferenceValues {
        sources: vec!["trustee claims".into()],
        ..Default::default()
    };
    for (k, v) in claims["measurements"].as_object().unwrap() {
        r.measurements.insert(
            k.parse().unwrap(),
            vec![hex::decode(v.as_str().unwrap()).unwrap()],
        );
    }
    r
}

/// Offset of the signature (the last 96 bytes), of block 2's value, of the opaque FWID.
fn offsets(ev: &[u8]) -> (usize, usize, usize) {
    let sig = ev.len() - 96;
    // request 37, response header 8, block 1 (4 + 3 + 48), block 2 header (4 + 3).
    let block2 = 37 + 8 + 55 + 7;
    let fwid_hex = "f5c384aebb579217a2c66b17ed0f28e6";
    let fwid = hex::encode(ev).find(fwid_hex).unwrap() / 2;
    (sig, block2, fwid)
}

#[test]
fn h100_sample_evidence_verifies_at_its_time() {
    let c = check(&sample(), &chain(1), AT);
    assert!(c.ok(), "{c:#?}");
    assert_eq!(c.driver_version.as_deref(), Some("550.90.07"));
    assert_eq!(c.vbios_version.as_deref(), Some("96.00.9f.00.01"));
    let mut chains = ChainVerifier::nvidia(AT).unwrap();
    let with_rim = verify_gpu(
        0,
        &sample(),
        &chain(1),
        &nonce(),
        &mut chains,
        Some(&sample_reference()),
    );
    assert!(with_rim.ok(), "{with_rim:#?}");
}

#[test]
fn one_byte_of_the_signature_fails_the_signature_link() {
    let mut ev = sample();
    let (sig, _, _) = offsets(&ev);
    ev[sig + 10] ^= 1;
    let c = check(&ev, &chain(1), AT);
    assert!(c.signature.is_err());
    assert!(c.chain.is_ok() && c.fwid.is_ok() && c.nonce.is_ok());
}

#[test]
fn a_changed_measurement_fails_the_signature_and_the_reference_values() {
    let mut ev = sample();
    let (_, block2, _) = offsets(&ev);
    ev[block2] ^= 1;
    let c = check(&ev, &chain(1), AT);
    assert!(c.signature.is_err() && c.chain.is_ok());
    // Signed evidence against other reference values: only the measurements link fails.
    let mut reference = sample_reference();
    reference.measurements.insert(2, vec![vec![0; 48]]);
    let mut chains = ChainVerifier::nvidia(AT).unwrap();
    let c = verify_gpu(
        0,
        &sample(),
        &chain(1),
        &nonce(),
        &mut chains,
        Some(&reference),
    );
    assert!(c.signature.is_ok());
    let m = c.measurements.unwrap().unwrap_err();
    assert!(m.contains("block 2"), "{m}");
}

#[test]
fn a_changed_nonce_fails_the_nonce_and_the_signature() {
    let mut ev = sample();
    ev[4] ^= 1;
    let c = check(&ev, &chain(1), AT);
    assert!(c.nonce.is_err() && c.signature.is_err());
    // The genuine report, another expected nonce: only the nonce link fails.
    let mut chains = ChainVerifier::nvidia(AT).unwrap();
    let c = verify_gpu(0, &sample(), &chain(1), &[7; 32], &mut chains, None);
    assert!(c.nonce.is_err() && c.signature.is_ok());
}

#[test]
fn a_changed_fwid_fails_the_fwid_link() {
    let mut ev = sample();
    let (_, _, fwid) = offsets(&ev);
    ev[fwid] ^= 1;
    let c = check(&ev, &chain(1), AT);
    assert!(c.fwid.unwrap_err().contains("≠"));
    assert!(c.signature.is_err() && c.chain.is_ok());
}

#[test]
fn each_broken_chain_fails_the_chain_link() {
    for case in [2, 3, 4] {
        let c = check(&sample(), &chain(case), AT);
        assert!(c.chain.is_err(), "case {case}");
        assert!(
            c.signature.is_err(),
            "case {case}: no trusted key, no signature"
        );
    }
}

#[test]
fn an_expired_or_not_yet_valid_chain_fails_the_chain_link() {
    // 2021-06-01: before the chain's notBefore (2022-03-01).
    let c = check(&sample(), &chain(1), 1_622_505_600);
    assert!(c.chain.unwrap_err().contains("not valid at"));
    // Year 10000: past every notAfter (9999-12-31), the root's included.
    let c = check(&sample(), &chain(1), 253_402_300_800);
    assert!(c.chain.unwrap_err().contains("not valid at"));
}

#[test]
fn a_foreign_root_fails_the_chain_link() {
    let rim_root = split_chain(&sealtune_e2e::fixture_bytes("nvidia/nvidia_rim_root.pem"))
        .unwrap()
        .remove(0);
    let mut chains = ChainVerifier::with_root(rim_root, AT);
    let c = verify_gpu(0, &sample(), &chain(1), &nonce(), &mut chains, None);
    assert!(c.chain.unwrap_err().contains("pinned"));
}

#[test]
fn parsed_sample_blocks_equal_trustees_claims() {
    let r = Report::parse(&sample()).unwrap();
    let reference = sample_reference();
    for b in &r.response.blocks {
        assert_eq!(
            reference.measurements[&b.index][0], b.value,
            "block {}",
            b.index
        );
    }
}

// ---- the payload and its binding (synthetic GPUs) ----

fn bound_payload(n: u8, verifier_nonce: [u8; 32]) -> (NvidiaPayload, Vec<u8>) {
    let gn = gpu_nonce(&verifier_nonce);
    let s = synthetic_gpus(n, gn);
    let list = s
        .gpus
        .iter()
        .map(|(ev, pem)| GpuEvidence::new(ev, pem.as_bytes(), "HOPPER"))
        .collect();
    let cc = Some(CcState {
        cc_enabled: true,
        dev_tools: false,
    });
    (NvidiaPayload::new(gn, "HOPPER", list, cc), s.root_der)
}

fn document(verifier_nonce: [u8; 32], hash: Option<B256>) -> AttestationDocument {
    let mut d = AttestationDocument::new(
        Address::repeat_byte(1),
        B256::from(verifier_nonce),
        B256::repeat_byte(2),
    );
    d.gpu_evidence_hash = hash;
    d
}

#[test]
fn bound_evidence_of_eight_gpus_verifies() {
    let (p, root) = bound_payload(8, [9; 32]);
    let out = verify_payload(
        Some(&serde_json::to_value(&p).unwrap()),
        &GpuInputs {
            now: SYNTHETIC_GPU_AT,
            document: Some(document([9; 32], Some(p.hash().unwrap()))),
            root_der: Some(root),
            ..Default::default()
        },
    );
    assert!(out.ok(), "{out:#?}");
    assert_eq!(out.gpus.len(), 8);
    assert_eq!(out.min_driver_version(), Some("560.35.03"));
}

#[test]
fn evidence_not_bound_in_the_document_fails_the_binding() {
    let (p, root) = bound_payload(1, [9; 32]);
    let value = serde_json::to_value(&p).unwrap();
    let run = |doc: Option<AttestationDocument>| {
        verify_payload(
            Some(&value),
            &GpuInputs {
                now: SYNTHETIC_GPU_AT,
                document: doc,
                root_der: Some(root.clone()),
                ..Default::default()
            },
        )
    };
    // Empty slot; another machine's evidence (another hash); no document at all.
    for doc in [
        Some(document([9; 32], None)),
        Some(document([9; 32], Some(B256::repeat_byte(3)))),
        None,
    ] {
        let out = run(doc);
        assert!(matches!(out.binding, Some(Err(_))), "{:?}", out.binding);
        assert!(!out.ok());
    }
    // A relayed answer: the document is for another verifier nonce.
    let out = run(Some(document([8; 32], Some(p.hash().unwrap()))));
    assert!(matches!(out.binding, Some(Err(_))));
    assert!(out.gpus[0].nonce.is_err());
}

#[test]
fn a_report_that_signed_another_nonce_fails_the_gpu_nonce_link() {
    // Evidence over the raw verifier nonce instead of gpu_nonce(verifier nonce).
    let s = synthetic_gpus(1, [9; 32]);
    let (ev, pem) = &s.gpus[0];
    let p = NvidiaPayload::new(
        gpu_nonce(&[9; 32]),
        "HOPPER",
        vec![GpuEvidence::new(ev, pem.as_bytes(), "HOPPER")],
        None,
    );
    let out = verify_payload(
        Some(&serde_json::to_value(&p).unwrap()),
        &GpuInputs {
            now: SYNTHETIC_GPU_AT,
            document: Some(document([9; 32], Some(p.hash().unwrap()))),
            root_der: Some(s.root_der.clone()),
            ..Default::default()
        },
    );
    assert!(matches!(out.binding, Some(Ok(_))));
    assert!(out.gpus[0].nonce.is_err() && out.gpus[0].signature.is_ok());
}

// ---- the report and the policy ----

fn dev_doc_with(payload: Option<serde_json::Value>) -> QuoteDocument {
    // A real quote so that verify_document runs every link (its own links fail without
    // collateral; only the GPU links are looked at here).
    let quote = sealtune_e2e::fixture_bytes("tdx/tdx_quote");
    QuoteDocument {
        quote,
        nvidia_payload: payload,
        ..Default::default()
    }
}

#[test]
fn the_quote_report_shows_each_gpu_link() {
    let p = NvidiaPayload::new(
        nonce(),
        "HOPPER",
        vec![GpuEvidence::new(&sample(), &chain(1), "HOPPER")],
        None,
    );
    let rep = verify_document(
        &dev_doc_with(Some(serde_json::to_value(&p).unwrap())),
        &VerifyOptions {
            now: AT,
            ..Default::default()
        },
    );
    for name in [
        "GPU evidence",
        "GPU report",
        "GPU chain",
        "GPU signature",
        "GPU FWID",
        "GPU nonce",
    ] {
        let l = rep.link(name).unwrap_or_else(|| panic!("no {name} link"));
        assert!(l.ok, "{name}: {}", l.detail);
    }
    // No attestation document: the evidence is not bound; informational without a policy.
    let b = rep.link("GPU binding").unwrap();
    assert!(!b.ok && !b.required);
    assert!(rep.render_human().contains("driver 550.90.07"));
}

#[test]
fn a_policy_that_requires_gpu_evidence_fails_without_it() {
    let policy = Policy::from_toml(
        "gpu.toml",
        "[gpu]\nrequired = true\nmin_driver_version = \"550.90.07\"\ncount = 1\n",
    )
    .unwrap();
    let opts = VerifyOptions {
        now: AT,
        policy: Some(policy),
        ..Default::default()
    };
    let rep = verify_document(&dev_doc_with(None), &opts);
    let l = rep.link("GPU evidence").unwrap();
    assert!(!l.ok && l.required);
    let p = rep.link("policy gpu").unwrap();
    assert!(!p.ok && p.detail.contains("gpu.toml:2"), "{}", p.detail);
    // An answer without nvidia_payload and a policy without [gpu]: no GPU link at all.
    let rep = verify_document(
        &dev_doc_with(None),
        &VerifyOptions {
            now: AT,
            ..Default::default()
        },
    );
    assert!(rep.links.iter().all(|l| !l.name.starts_with("GPU")));
}

#[test]
fn gpu_policy_rules_name_their_line() {
    let (p, root) = bound_payload(2, [9; 32]);
    let out = verify_payload(
        Some(&serde_json::to_value(&p).unwrap()),
        &GpuInputs {
            now: SYNTHETIC_GPU_AT,
            document: Some(document([9; 32], Some(p.hash().unwrap()))),
            root_der: Some(root),
            ..Default::default()
        },
    );
    let ok = Policy::from_toml(
        "p.toml",
        "[gpu]\nrequired = true\nmin_driver_version = \"560.35\"\ncc_on = true\ndev_tools = false\ncount = 2\n",
    )
    .unwrap();
    assert!(ok.gpu.check("p.toml", &out).unwrap().is_ok());
    let bad = Policy::from_toml(
        "p.toml",
        "[gpu]\nmin_driver_version = \"570.1\"\ndev_tools = true\ncount = 8\n",
    )
    .unwrap();
    let e = bad.gpu.check("p.toml", &out).unwrap().unwrap_err();
    assert!(
        e.contains("p.toml:2") && e.contains("p.toml:3") && e.contains("p.toml:4"),
        "{e}"
    );
    assert!(Policy::from_toml("p.toml", "[gpu]\nmin_driver_version = \"new\"\n").is_err());
    assert!(Policy::from_toml("p.toml", "[gpu]\nrequird = true\n").is_err());
}

// ---- the command line ----

fn run_cli(args: &[&str]) -> (i32, String) {
    use clap::Parser as _;
    let cli = sealtune_verifier::cli::Cli::try_parse_from(args).unwrap();
    let mut out = Vec::new();
    let code = sealtune_verifier::cli::run(&cli, 0, &mut out).unwrap();
    (code, String::from_utf8(out).unwrap())
}

/// A GetQuote-shaped answer: the real TDX quote plus the real H100 evidence.
fn answer_file(dir: &std::path::Path) -> String {
    let p = NvidiaPayload::new(
        nonce(),
        "HOPPER",
        vec![GpuEvidence::new(&sample(), &chain(1), "HOPPER")],
        None,
    );
    let body = serde_json::json!({
        "quote": hex::encode(sealtune_e2e::fixture_bytes("tdx/tdx_quote")),
        "nvidia_payload": p,
    });
    let path = dir.join("answer.json");
    std::fs::write(&path, body.to_string()).unwrap();
    path.display().to_string()
}

#[test]
fn sealtune_verify_quote_shows_each_gpu_link() {
    let dir = tempfile::tempdir().unwrap();
    let file = answer_file(dir.path());
    let collateral = sealtune_e2e::fixture("tdx/tdx_quote_collateral.json");
    let (_, out) = run_cli(&[
        "sealtune-verify",
        "quote",
        "--file",
        &file,
        "--collateral",
        &collateral.display().to_string(),
        "--at",
        "1750332747",
        "--offline",
    ]);
    for line in [
        "✓ GPU evidence",
        "✓ GPU report",
        "✓ GPU chain",
        "✓ GPU signature",
        "✓ GPU FWID",
        "✓ GPU nonce",
        "driver 550.90.07, VBIOS 96.00.9f.00.01",
    ] {
        assert!(out.contains(line), "{line}: {out}");
    }
}

#[test]
fn a_rim_for_another_vbios_fails_the_gpu_measurements_link() {
    let dir = tempfile::tempdir().unwrap();
    let file = answer_file(dir.path());
    let collateral = sealtune_e2e::fixture("tdx/tdx_quote_collateral.json");
    let rim = sealtune_e2e::fixture("nvidia/vbios_rim_96005E0001_PROD.swidtag");
    let (code, out) = run_cli(&[
        "sealtune-verify",
        "quote",
        "--file",
        &file,
        "--collateral",
        &collateral.display().to_string(),
        "--at",
        "1750332747",
        "--offline",
        "--rim",
        &rim.display().to_string(),
    ]);
    assert!(out.contains("✗ GPU measurements"), "{out}");
    assert!(out.contains("✓ GPU signature"), "{out}");
    assert_eq!(code, 1);
}

#[test]
fn a_dev_answer_gets_the_gpu_links_too() {
    let policy = Policy::from_toml("gpu.toml", "[gpu]\nrequired = true\n").unwrap();
    let doc = QuoteDocument {
        dev: true,
        ..Default::default()
    };
    let rep = verify_document(
        &doc,
        &VerifyOptions {
            now: AT,
            allow_dev_quote: true,
            policy: Some(policy),
            ..Default::default()
        },
    );
    assert!(!rep.link("GPU evidence").unwrap().ok);
    assert!(!rep.link("policy gpu").unwrap().ok);
    assert!(!rep.verified);
}
