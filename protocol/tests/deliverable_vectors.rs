//! Declarative vectors in `tests/vectors/deliverable/` (a `fail_` prefix marks a case that must be refused).
//!
//! * `ecies_*.json`: payloads made by `eciesjs` 0.4.18 under node; ours must open them (and refuse the
//!   altered `fail_ecies_*` ones with the named error).
//! * `sealed_*.json`: no official sealer exists (the TEE side is not published), so these pin our sealer:
//!   a tiny model sealed with a fixed RNG and a fixed TEE key (in 64-byte chunks, plus one at the wire
//!   size). Resealing must give the same bytes. `deliverable_js_differential.rs` opens every
//!   `sealed_*.json` with the official SDK's code (an implementation independent of ours) and checks
//!   that it refuses every `fail_sealed_*.json`. Regenerate with `SEALTUNE_REGEN_VECTORS=1` after a
//!   deliberate format change.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use k256::ecdsa::SigningKey;
use sealtune_protocol::deliverable::{self, ChunkLen, DeliverableKey, OpenError, SealOptions};
use sealtune_protocol::ecies::{self, EciesError};
use sealtune_protocol::sig::address_of;
use serde_json::{Value, json};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/deliverable")
}

fn load(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join(name)).unwrap()).unwrap()
}

fn h(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

/// A counter RNG: the key is bytes 1..=32, the IV 33..=44.
struct Counter(u8);
impl rand_core::RngCore for Counter {
    fn next_u32(&mut self) -> u32 {
        rand_core::impls::next_u32_via_fill(self)
    }
    fn next_u64(&mut self) -> u64 {
        rand_core::impls::next_u64_via_fill(self)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for b in dest {
            self.0 = self.0.wrapping_add(1);
            *b = self.0;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl rand_core::CryptoRng for Counter {}

const TEE_KEY: [u8; 32] = [0x5e; 32];

fn model_files() -> BTreeMap<&'static str, Vec<u8>> {
    BTreeMap::from([
        ("config.json", br#"{"lora_r": 8}"#.to_vec()),
        (
            "sub/adapter_model.safetensors",
            (0..=255u8).cycle().take(300).collect(),
        ),
    ])
}

/// Seal the vector model with the counter RNG and the TEE key; returns (sealed file, zip, key).
fn seal_vector(chunk_len: ChunkLen) -> (Vec<u8>, Vec<u8>, DeliverableKey) {
    let tmp = tempfile::tempdir().unwrap();
    for (name, data) in model_files() {
        let p = tmp.path().join("model").join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    let mut out = Vec::new();
    let options = SealOptions {
        chunk_len,
        ..SealOptions::default()
    };
    let sealed = deliverable::seal_dir(
        &tmp.path().join("model"),
        &mut out,
        &mut Counter(0),
        &options,
    )
    .unwrap();
    let tee = SigningKey::from_slice(&TEE_KEY).unwrap();
    deliverable::finish_writer(
        Cursor::new(&mut out),
        &deliverable::sign_tags(&tee, &sealed.tag_digest),
    )
    .unwrap();
    let mut zip = Vec::new();
    deliverable::open(
        &mut Cursor::new(&out),
        &mut zip,
        &sealed.key,
        address_of(tee.verifying_key()),
        chunk_len,
    )
    .unwrap();
    (out, zip, sealed.key.clone())
}

fn sealed_vectors() -> Vec<(String, Value)> {
    let tee = address_of(SigningKey::from_slice(&TEE_KEY).unwrap().verifying_key());
    let mut out = vec![];
    for (name, chunk) in [
        ("sealed_chunks_64", 64usize),
        ("sealed_wire_chunk", deliverable::WIRE_CHUNK_LEN),
    ] {
        let chunk_len = ChunkLen::for_tests(chunk).unwrap();
        let (sealed, zip, key) = seal_vector(chunk_len);
        let files: BTreeMap<_, _> = model_files()
            .into_iter()
            .map(|(k, v)| (k, hex::encode(v)))
            .collect();
        out.push((
            format!("{name}.json"),
            json!({
                "description": "a tiny model sealed with a counter RNG (key 01..20, IV 21..2c) and TEE key 5e..5e",
                "chunk_len": chunk, "tee_signer": tee.to_checksum(None), "key": hex::encode(key.as_bytes()),
                "files": files, "zip": hex::encode(&zip), "sealed": hex::encode(&sealed),
                "modelRootHash": sealtune_protocol::keccak256(&sealed).to_string(),
            }),
        ));
        if chunk != 64 {
            continue;
        }
        let case = |mutate: &dyn Fn(&mut Vec<u8>),
                    key: &DeliverableKey,
                    signer: String,
                    error: &str| {
            let mut bytes = sealed.clone();
            mutate(&mut bytes);
            json!({
                "description": "a sealed vector, altered or opened with the wrong inputs: must be refused",
                "chunk_len": chunk, "tee_signer": signer, "key": hex::encode(key.as_bytes()),
                "sealed": hex::encode(&bytes), "error": error,
            })
        };
        let me = tee.to_checksum(None);
        let other = address_of(SigningKey::from_slice(&[0x77; 32]).unwrap().verifying_key())
            .to_checksum(None);
        let wrong_key = DeliverableKey::from_bytes([0xee; 32]);
        let n = sealed.len();
        for (fname, v) in [
            (
                "fail_sealed_truncated_end",
                case(&|b| b.truncate(n - 7), &key, me.clone(), "Truncated"),
            ),
            (
                "fail_sealed_header_only",
                case(&|b| b.truncate(77), &key, me.clone(), "Truncated"),
            ),
            (
                "fail_sealed_flipped_chunk1",
                case(&|b| b[77 + 80 + 5] ^= 1, &key, me.clone(), "CorruptedChunk"),
            ),
            (
                "fail_sealed_flipped_tag0",
                case(&|b| b[77 + 79] ^= 1, &key, me.clone(), "WrongSigner"),
            ),
            (
                "fail_sealed_tampered_tag_sig",
                case(&|b| b[64] = 5, &key, me.clone(), "MalformedTagSignature"),
            ),
            (
                "fail_sealed_unsigned",
                case(&|b| b[..65].fill(0), &key, me.clone(), "Unsigned"),
            ),
            (
                "fail_sealed_other_signer",
                case(&|_| {}, &key, other.clone(), "WrongSigner"),
            ),
            (
                "fail_sealed_wrong_key",
                case(&|_| {}, &wrong_key, me.clone(), "WrongKey"),
            ),
            (
                "fail_sealed_flipped_iv",
                case(&|b| b[70] ^= 1, &key, me.clone(), "WrongKey"),
            ),
        ] {
            out.push((format!("{fname}.json"), v));
        }
    }
    out
}

fn error_name(e: &OpenError) -> &'static str {
    match e {
        OpenError::Truncated { .. } => "Truncated",
        OpenError::Unsigned => "Unsigned",
        OpenError::MalformedTagSignature(_) => "MalformedTagSignature",
        OpenError::WrongSigner { .. } => "WrongSigner",
        OpenError::WrongKey => "WrongKey",
        OpenError::CorruptedChunk { .. } => "CorruptedChunk",
        OpenError::ChangedWhileOpening => "ChangedWhileOpening",
        OpenError::Io(_) => "Io",
    }
}

#[test]
fn sealed_vectors_are_reproduced_by_the_sealer() {
    let vectors = sealed_vectors();
    if std::env::var_os("SEALTUNE_REGEN_VECTORS").is_some() {
        // A test that rewrites its own expectations proves nothing: never in CI.
        assert!(
            std::env::var("CI").map_or(true, |v| v.is_empty() || v == "false"),
            "SEALTUNE_REGEN_VECTORS is refused under CI=true: regenerate on a workstation and commit the diff"
        );
        for (name, v) in &vectors {
            std::fs::write(
                dir().join(name),
                serde_json::to_string_pretty(v).unwrap() + "\n",
            )
            .unwrap();
        }
    }
    for (name, v) in &vectors {
        assert_eq!(
            &load(name),
            v,
            "{name} differs from what the sealer produces now (SEALTUNE_REGEN_VECTORS=1 after a deliberate change)"
        );
    }
}

#[test]
fn sealed_vectors_open_or_fail_as_declared() {
    let mut seen = 0;
    for entry in std::fs::read_dir(dir()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if !name.contains("sealed") {
            continue;
        }
        seen += 1;
        let v = load(&name);
        let chunk_len = ChunkLen::for_tests(v["chunk_len"].as_u64().unwrap() as usize).unwrap();
        let key = DeliverableKey::from_hex(v["key"].as_str().unwrap()).unwrap();
        let signer = v["tee_signer"].as_str().unwrap().parse().unwrap();
        let mut out = Vec::new();
        let result = deliverable::open(
            &mut Cursor::new(h(&v["sealed"])),
            &mut out,
            &key,
            signer,
            chunk_len,
        );
        if name.starts_with("fail_") {
            let err = result.expect_err(&name);
            assert_eq!(
                error_name(&err),
                v["error"].as_str().unwrap(),
                "{name}: {err}"
            );
        } else {
            result.unwrap();
            assert_eq!(out, h(&v["zip"]), "{name}");
        }
    }
    assert!(seen >= 10, "vectors missing: {seen}");
}

#[test]
fn ecies_vectors_from_eciesjs_open_with_ours() {
    let v = load("ecies_eciesjs.json");
    let sk = ecies::SecretKey::from_slice(&h(&v["receiver_secret_key"])).unwrap();
    assert_eq!(
        ecies::parse_public_key(&h(&v["receiver_public_key"])).unwrap(),
        sk.public_key()
    );
    for case in v["cases"].as_array().unwrap() {
        let plain = ecies::decrypt(&sk, &h(&case["payload"])).unwrap();
        assert_eq!(plain.as_slice(), h(&case["plaintext"]).as_slice());
    }
}

#[test]
fn ecies_fail_vectors_are_refused_with_the_declared_error() {
    let mut seen = 0;
    for entry in std::fs::read_dir(dir()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if !name.starts_with("fail_ecies_") {
            continue;
        }
        seen += 1;
        let v = load(&name);
        let sk = ecies::SecretKey::from_slice(&h(&v["receiver_secret_key"])).unwrap();
        let err = ecies::decrypt(&sk, &h(&v["payload"])).unwrap_err();
        let got = match err {
            EciesError::TooShort(_) => "TooShort",
            EciesError::InvalidEphemeralKey => "InvalidEphemeralKey",
            EciesError::Authentication => "Authentication",
            EciesError::InvalidPublicKey => "InvalidPublicKey",
            EciesError::KeyLength(_) => "KeyLength",
        };
        assert_eq!(got, v["error"].as_str().unwrap(), "{name}");
    }
    assert!(seen >= 5);
}
