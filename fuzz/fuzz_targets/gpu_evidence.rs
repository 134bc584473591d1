//! Fuzz the GPU evidence readers (crate::gpu): the first byte picks the reader, the rest is the
//! input. SPDM report (`spdm::Report::parse`, then the whole per-GPU check against the real H100
//! chain), certificate chain (`ChainVerifier::verify`, PEM or DER), served `nvidia_payload` JSON
//! (`verify_payload`), RIM SWID tag (`rim::Rim::parse`). Any bytes give a result or a typed error,
//! never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sealtune_verifier::gpu::chain::ChainVerifier;
use sealtune_verifier::gpu::{GpuInputs, rim::Rim, spdm::Report, verify_gpu, verify_payload};

const AT: u64 = 1_717_200_000;
const CHAIN: &[u8] = include_bytes!("../../tests/fixtures/nvidia/hopper_cert_chain_case1.txt");

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else { return };
    match mode % 4 {
        0 => {
            if let Ok(r) = Report::parse(rest) {
                let _ = (r.driver_version(), r.vbios_version(), r.fwid());
            }
            if let Ok(mut chains) = ChainVerifier::nvidia(AT) {
                let _ = verify_gpu(0, rest, CHAIN, &[0; 32], &mut chains, None);
            }
        }
        1 => {
            if let Ok(mut chains) = ChainVerifier::nvidia(AT) {
                let _ = chains.verify(rest);
            }
        }
        2 => {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(rest) {
                let _ = verify_payload(Some(&v), &GpuInputs { now: AT, ..Default::default() });
            }
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(rest) {
                let _ = Rim::parse(text);
            }
        }
    }
});
