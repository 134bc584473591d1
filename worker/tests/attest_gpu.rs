//! GPU evidence in `/v1/quote` (docs/PROTOCOL.md §5.1.1): the worker collects it over the nonce
//! derived from the verifier's, serves it as `nvidia_payload`, and binds its hash in the
//! attestation document; the verifier library accepts exactly that binding. Synthetic
//! NVIDIA-shaped GPUs (sealtune_e2e::gpu) stand in for NVML.

use std::sync::Arc;

use sealtune_e2e::gpu::{SYNTHETIC_GPU_AT, synthetic_gpus};
use sealtune_protocol::attestation::{AttestationDocument, gpu_nonce};
use sealtune_protocol::gpu::{CcState, GpuEvidence, NvidiaPayload};
use sealtune_verifier::gpu::{GpuInputs, verify_payload};
use sealtune_worker::attest::gpu::{EvidenceSource, FileSource, GpuUnavailable};
use sealtune_worker::attest::{AttestConfig, Attestation, SourceKind};

const CONFIG: alloy::primitives::B256 = alloy::primitives::B256::repeat_byte(0x42);

/// Two synthetic GPUs that sign whatever nonce they are asked; the test root is the same for
/// every call (deterministic keys).
#[derive(Debug)]
struct SyntheticSource;

impl EvidenceSource for SyntheticSource {
    fn collect(&self, nonce: [u8; 32]) -> Result<NvidiaPayload, GpuUnavailable> {
        let s = synthetic_gpus(2, nonce);
        let list = s
            .gpus
            .iter()
            .map(|(e, c)| GpuEvidence::new(e, c.as_bytes(), "HOPPER"))
            .collect();
        let cc = Some(CcState {
            cc_enabled: true,
            dev_tools: false,
        });
        Ok(NvidiaPayload::new(nonce, "HOPPER", list, cc))
    }
}

fn root() -> Vec<u8> {
    synthetic_gpus(0, [0; 32]).root_der
}

async fn open(dir: &std::path::Path) -> Attestation {
    Attestation::open(&AttestConfig::new(SourceKind::Dev), dir, CONFIG)
        .await
        .unwrap()
}

#[tokio::test]
async fn quote_with_a_nonce_binds_the_gpu_evidence_it_serves() {
    let dir = tempfile::tempdir().unwrap();
    let att = open(dir.path())
        .await
        .with_gpu_source(Arc::new(SyntheticSource));
    let nonce = [7u8; 32];
    let body = att.quote_body(Some(nonce)).await.unwrap();
    let doc = AttestationDocument::from_json(&body["attestation_document"]).unwrap();
    let payload = NvidiaPayload::from_json(&body["nvidia_payload"]).unwrap();
    assert_eq!(payload.nonce_bytes().unwrap(), gpu_nonce(&nonce));
    assert_eq!(doc.gpu_evidence_hash, Some(payload.hash().unwrap()));
    let out = verify_payload(
        Some(&body["nvidia_payload"]),
        &GpuInputs {
            now: SYNTHETIC_GPU_AT,
            document: Some(doc),
            root_der: Some(root()),
            ..Default::default()
        },
    );
    assert!(out.ok(), "{out:#?}");
    assert_eq!(out.gpus.len(), 2);
}

#[tokio::test]
async fn another_machines_evidence_for_the_same_nonce_is_not_bound() {
    let dir = tempfile::tempdir().unwrap();
    let att = open(dir.path())
        .await
        .with_gpu_source(Arc::new(SyntheticSource));
    let nonce = [7u8; 32];
    let body = att.quote_body(Some(nonce)).await.unwrap();
    let doc = AttestationDocument::from_json(&body["attestation_document"]).unwrap();
    // Genuine GPUs elsewhere answer the same GPU nonce: a different payload, hence a different hash.
    let other = SyntheticSource.collect(gpu_nonce(&nonce)).unwrap();
    let mut swapped = other.clone();
    swapped.evidence_list.truncate(1);
    let out = verify_payload(
        Some(&serde_json::to_value(&swapped).unwrap()),
        &GpuInputs {
            now: SYNTHETIC_GPU_AT,
            document: Some(doc),
            root_der: Some(root()),
            ..Default::default()
        },
    );
    assert!(
        out.gpus.iter().all(|g| g.ok()),
        "each GPU's own evidence is genuine"
    );
    assert!(matches!(out.binding, Some(Err(_))), "{:?}", out.binding);
}

#[tokio::test]
async fn without_gpu_evidence_the_field_says_why_and_the_slot_stays_empty() {
    let dir = tempfile::tempdir().unwrap();
    let att =
        open(dir.path())
            .await
            .with_gpu_source(Arc::new(sealtune_worker::attest::gpu::NoGpu(
                "no GPU on this host".into(),
            )));
    let body = att.quote_body(Some([1; 32])).await.unwrap();
    assert_eq!(
        body["nvidia_payload"],
        serde_json::json!({"absent": "no GPU on this host"})
    );
    let doc = AttestationDocument::from_json(&body["attestation_document"]).unwrap();
    assert_eq!(doc.gpu_evidence_hash, None);
    // Without a nonce the 0G layout is unchanged; the field is still an object.
    let body = att.quote_body(None).await.unwrap();
    assert!(body["nvidia_payload"].is_object());
}

#[tokio::test]
async fn the_default_source_on_a_host_without_nvml_serves_absent() {
    let dir = tempfile::tempdir().unwrap();
    let att = open(dir.path()).await;
    let body = att.quote_body(Some([1; 32])).await.unwrap();
    let doc = AttestationDocument::from_json(&body["attestation_document"]).unwrap();
    match body["nvidia_payload"].get("absent") {
        Some(reason) => {
            assert!(reason.is_string());
            assert_eq!(doc.gpu_evidence_hash, None);
        }
        // A CC GPU with NVML (a GPU host): the evidence served is the one bound.
        None => {
            let p = NvidiaPayload::from_json(&body["nvidia_payload"]).unwrap();
            assert_eq!(doc.gpu_evidence_hash, Some(p.hash().unwrap()));
        }
    }
}

#[tokio::test]
async fn recorded_evidence_replays_and_fails_the_nonce_link() {
    let sample = sealtune_e2e::fixture_bytes("nvidia/hopperAttestationReport.txt");
    let evidence = hex::decode(String::from_utf8(sample).unwrap().trim()).unwrap();
    let chain = sealtune_e2e::fixture_bytes("nvidia/hopper_cert_chain_case1.txt");
    let dir = tempfile::tempdir().unwrap();
    let att = open(dir.path())
        .await
        .with_gpu_source(Arc::new(FileSource::new(vec![(evidence, chain)], None)));
    let body = att.quote_body(Some([3; 32])).await.unwrap();
    let doc = AttestationDocument::from_json(&body["attestation_document"]).unwrap();
    let out = verify_payload(
        Some(&body["nvidia_payload"]),
        &GpuInputs {
            now: 1_717_200_000,
            document: Some(doc),
            ..Default::default()
        },
    );
    assert!(matches!(out.binding, Some(Ok(_))));
    let g = &out.gpus[0];
    assert!(g.chain.is_ok() && g.signature.is_ok() && g.fwid.is_ok());
    assert!(g.nonce.is_err(), "replayed evidence is not fresh");
}
