//! Differential tests against the official JavaScript code (PROTOCOL.md §4): what we seal, the 0G SDK's
//! `aesGCMDecryptToFile` opens and adm-zip extracts; keys wrapped by `eciesjs` open with ours and ours
//! open with the SDK's `eciesDecrypt`; every committed `sealed_*.json` vector opens with the SDK's code
//! (and every `fail_sealed_*.json` is refused by it), independently of our opener.
//!
//! These need node and the pinned packages in `<repo>/node_modules`; they fail (never skip) when missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k256::SecretKey;
use k256::ecdsa::SigningKey;
use k256::elliptic_curve::sec1::ToEncodedPoint;
use rand_core::{OsRng, RngCore};
use sealtune_protocol::deliverable::{self, DeliverableKey, SealOptions, ZipCompression};
use sealtune_protocol::ecies;
use sealtune_protocol::sig::address_of;

/// Run a script of `protocol/tests/js` under node with the repository's `node_modules`.
fn node(script: &str, args: &[&str]) -> std::process::Output {
    let modules = sealtune_e2e::node_modules();
    assert!(
        modules.join("@0gfoundation/0g-compute-ts-sdk").is_dir()
            && modules.join("eciesjs").is_dir(),
        "the official JS packages are missing from {}: run scripts/setup",
        modules.display()
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/js")
        .join(script);
    sealtune_e2e::node(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run node ({e}): install it with scripts/setup"))
}

fn tee() -> SigningKey {
    SigningKey::from_slice(&[0x5e; 32]).unwrap()
}

/// A model directory: nested folders, an empty file, a binary file of `big` pseudo-random bytes.
fn model_dir(root: &Path, big: usize) -> PathBuf {
    let dir = root.join("model");
    std::fs::create_dir_all(dir.join("sub/deeper")).unwrap();
    std::fs::write(dir.join("config.json"), br#"{"r": 8, "alpha": 16}"#).unwrap();
    std::fs::write(dir.join("empty.txt"), b"").unwrap();
    std::fs::write(dir.join("sub/deeper/tokenizer.json"), b"{}".repeat(1000)).unwrap();
    let mut weights = vec![0u8; big];
    OsRng.fill_bytes(&mut weights);
    std::fs::write(dir.join("sub/adapter_model.safetensors"), weights).unwrap();
    dir
}

fn assert_same_tree(a: &Path, b: &Path) {
    for entry in walk(a) {
        let rel = entry.strip_prefix(a).unwrap();
        let other = b.join(rel);
        if entry.is_dir() {
            assert!(other.is_dir(), "missing directory {}", other.display());
        } else {
            assert_eq!(
                std::fs::read(&entry).unwrap(),
                std::fs::read(&other).unwrap(),
                "{}",
                rel.display()
            );
        }
    }
    assert_eq!(walk(a).len(), walk(b).len());
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        out.push(p.clone());
        if p.is_dir() {
            out.extend(walk(&p));
        }
    }
    out
}

/// Seal `model` with `options`, sign with the TEE key, and open with the official client.
fn seal_and_open_with_official_client(
    model: &Path,
    work: &Path,
    options: &SealOptions,
) -> (serde_json::Value, deliverable::Sealed) {
    let enc = work.join("model.enc");
    let sealed = deliverable::seal_dir_to_file(model, &enc, &mut OsRng, options).unwrap();
    deliverable::finish(&enc, &deliverable::sign_tags(&tee(), &sealed.tag_digest)).unwrap();
    let signer = address_of(tee().verifying_key()).to_checksum(None);
    let out = node(
        "deliverable_open.cjs",
        &[
            enc.to_str().unwrap(),
            work.join("official.zip").to_str().unwrap(),
            &hex::encode(sealed.key.as_bytes()),
            &signer,
            work.join("official").to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "node said: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (v, sealed)
}

#[test]
fn official_client_opens_a_single_chunk_deliverable_and_adm_zip_extracts_it() {
    let work = tempfile::tempdir().unwrap();
    let model = model_dir(work.path(), 100_000);
    let (v, sealed) =
        seal_and_open_with_official_client(&model, work.path(), &SealOptions::default());
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(sealed.chunks, 1);
    let entries: Vec<String> = serde_json::from_value(v["entries"].clone()).unwrap();
    assert!(
        entries.iter().all(|e| e.starts_with("output_model/")),
        "{entries:?}"
    );
    assert!(
        entries.contains(&"output_model/sub/adapter_model.safetensors".to_string()),
        "{entries:?}"
    );
    assert_same_tree(&model, &work.path().join("official/output_model"));

    // And our opener produces the very zip the official client produced.
    let ours = work.path().join("ours.zip");
    deliverable::open_file(
        &work.path().join("model.enc"),
        &ours,
        &sealed.key,
        address_of(tee().verifying_key()),
    )
    .unwrap();
    assert_eq!(
        std::fs::read(&ours).unwrap(),
        std::fs::read(work.path().join("official.zip")).unwrap()
    );
}

#[test]
fn official_client_opens_a_deflated_deliverable() {
    let work = tempfile::tempdir().unwrap();
    let model = model_dir(work.path(), 10_000);
    let options = SealOptions {
        compression: ZipCompression::Deflate,
        ..SealOptions::default()
    };
    let (v, _) = seal_and_open_with_official_client(&model, work.path(), &options);
    assert_eq!(v["ok"], true, "{v}");
    assert_same_tree(&model, &work.path().join("official/output_model"));
}

/// The SDK's decryptor reads fixed 64 MiB + 16-byte chunks, so a multi-chunk case needs a zip over 64 MiB.
#[test]
fn official_client_opens_a_multi_chunk_deliverable_over_64_mib() {
    let work = tempfile::tempdir().unwrap();
    let model = model_dir(work.path(), 64 * 1024 * 1024 + 300_000);
    let (v, sealed) =
        seal_and_open_with_official_client(&model, work.path(), &SealOptions::default());
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(sealed.chunks, 2);
    assert_same_tree(&model, &work.path().join("official/output_model"));
}

#[test]
fn official_client_rejects_a_deliverable_signed_by_another_signer() {
    let work = tempfile::tempdir().unwrap();
    let model = model_dir(work.path(), 1000);
    let enc = work.path().join("model.enc");
    let sealed =
        deliverable::seal_dir_to_file(&model, &enc, &mut OsRng, &SealOptions::default()).unwrap();
    let impostor = SigningKey::from_slice(&[0x77; 32]).unwrap();
    deliverable::finish(&enc, &deliverable::sign_tags(&impostor, &sealed.tag_digest)).unwrap();
    let out = node(
        "deliverable_open.cjs",
        &[
            enc.to_str().unwrap(),
            work.path().join("official.zip").to_str().unwrap(),
            &hex::encode(sealed.key.as_bytes()),
            &address_of(tee().verifying_key()).to_checksum(None),
            work.path().join("official").to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && stdout.contains("Invalid tag signature"),
        "{stdout}"
    );
}

#[test]
fn keys_wrapped_by_eciesjs_open_with_ours() {
    let sk = SecretKey::random(&mut OsRng);
    let pk_hex = hex::encode(sk.public_key().to_encoded_point(true).as_bytes());
    let plaintexts: Vec<Vec<u8>> = (0..24)
        .map(|i| {
            let mut p = vec![0u8; if i < 16 { 32 } else { i * 7 }];
            OsRng.fill_bytes(&mut p);
            p
        })
        .collect();
    let args: Vec<String> = plaintexts.iter().map(hex::encode).collect();
    let mut argv = vec!["encrypt", pk_hex.as_str()];
    argv.extend(args.iter().map(String::as_str));
    let out = node("deliverable_ecies.cjs", &argv);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), plaintexts.len());
    for (line, plain) in lines.iter().zip(&plaintexts) {
        let payload = hex::decode(line).unwrap();
        assert_eq!(payload.len(), ecies::OVERHEAD + plain.len());
        assert_eq!(
            ecies::decrypt(&sk, &payload).unwrap().as_slice(),
            plain.as_slice()
        );
        if plain.len() == 32 {
            assert_eq!(payload.len(), 129);
            assert_eq!(
                ecies::unwrap_key(&sk, &payload)
                    .unwrap()
                    .as_bytes()
                    .as_slice(),
                plain.as_slice()
            );
        }
    }
}

#[test]
fn keys_wrapped_by_us_open_with_the_official_client() {
    let sk = SecretKey::random(&mut OsRng);
    let keys: Vec<DeliverableKey> = (0..24)
        .map(|_| DeliverableKey::generate(&mut OsRng))
        .collect();
    let wrapped: Vec<String> = keys
        .iter()
        .map(|k| hex::encode(ecies::wrap_key(&mut OsRng, &sk.public_key(), k)))
        .collect();
    // One payload wrapped to another customer: the official client must refuse it too.
    let other = SecretKey::random(&mut OsRng);
    let foreign = hex::encode(ecies::wrap_key(&mut OsRng, &other.public_key(), &keys[0]));
    let sk_hex = hex::encode(sk.to_bytes());
    let mut argv = vec!["decrypt", sk_hex.as_str()];
    argv.extend(wrapped.iter().map(String::as_str));
    argv.push(&foreign);
    let out = node("deliverable_ecies.cjs", &argv);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), keys.len() + 1);
    for (line, key) in lines.iter().zip(&keys) {
        assert_eq!(line, &hex::encode(key.as_bytes()));
    }
    assert!(
        lines[keys.len()].starts_with("ERR:"),
        "{}",
        lines[keys.len()]
    );
}

/// The committed deliverable vectors, opened by the official JS code (`deliverable_vectors_open.cjs`):
/// the wire-size vector by the SDK's `aesGCMDecryptToFile` itself, the 64-byte-chunk ones by the same
/// loop with the chunk length as a parameter (the SDK's is a constant), through the SDK's crypto adapter
/// and ethers. Each `sealed_*.json` gives the vector's zip and files; each `fail_sealed_*.json` is refused.
#[test]
fn official_sdk_opens_every_sealed_vector_and_refuses_every_fail_vector() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/deliverable");
    let work = tempfile::tempdir().unwrap();
    let out = node(
        "deliverable_vectors_open.cjs",
        &[dir.to_str().unwrap(), work.path().to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: BTreeMap<String, serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["name"].as_str().unwrap().to_owned(), v)
        })
        .collect();
    let expected: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| {
            (n.starts_with("sealed_") || n.starts_with("fail_sealed_")) && n.ends_with(".json")
        })
        .collect();
    let mut names: Vec<&String> = results.keys().collect();
    let mut expected_sorted: Vec<&String> = expected.iter().collect();
    expected_sorted.sort();
    names.sort();
    assert_eq!(
        names, expected_sorted,
        "every sealed vector went through node"
    );
    let mut by_sdk_function = 0;
    for (name, got) in &results {
        let vector: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap();
        if name.starts_with("fail_") {
            assert_eq!(
                got["ok"], false,
                "{name}: the official code opened it: {got}"
            );
            continue;
        }
        assert_eq!(got["ok"], true, "{name}: {got}");
        assert_eq!(got["zip"], vector["zip"], "{name}: plaintext zip");
        let files = vector["files"].as_object().unwrap();
        let entries = got["entries"].as_object().unwrap();
        assert_eq!(entries.len(), files.len(), "{name}: {entries:?}");
        for (file, data) in files {
            assert_eq!(
                entries.get(&format!("output_model/{file}")),
                Some(data),
                "{name}: {file}"
            );
        }
        if got["opener"] == "sdk.aesGCMDecryptToFile" {
            by_sdk_function += 1;
        }
    }
    assert!(
        by_sdk_function >= 1,
        "at least one vector at the wire chunk size goes through the SDK's function itself"
    );
}
