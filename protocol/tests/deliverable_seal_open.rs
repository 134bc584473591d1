//! Sealing and opening (PROTOCOL.md §4): one test per rule, each failure a typed error that leaves no
//! plaintext behind, and property tests that no mutation of a sealed file yields other plaintext.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use k256::ecdsa::SigningKey;
use proptest::prelude::*;
use rand_core::{OsRng, RngCore};
use sealtune_protocol::deliverable::{
    self, ChunkLen, DeliverableKey, OpenError, SealOptions, UnzipError, UnzipLimits,
};
use sealtune_protocol::sig::address_of;
use sealtune_protocol::{Address, keccak256};

fn tee() -> SigningKey {
    SigningKey::from_slice(&[0x5e; 32]).unwrap()
}

fn tee_address() -> Address {
    address_of(tee().verifying_key())
}

fn small_chunks() -> SealOptions {
    SealOptions {
        chunk_len: ChunkLen::for_tests(1000).unwrap(),
        ..SealOptions::default()
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    model: PathBuf,
    enc: PathBuf,
    key: DeliverableKey,
}

/// A model of a few files sealed in 1000-byte chunks and signed by the TEE key.
fn sealed_fixture(weights: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir_all(model.join("sub")).unwrap();
    std::fs::write(model.join("config.json"), b"{}").unwrap();
    let mut w = vec![0u8; weights];
    OsRng.fill_bytes(&mut w);
    std::fs::write(model.join("sub/weights.bin"), w).unwrap();
    let enc = dir.path().join("model.enc");
    let sealed = deliverable::seal_dir_to_file(&model, &enc, &mut OsRng, &small_chunks()).unwrap();
    deliverable::finish(&enc, &deliverable::sign_tags(&tee(), &sealed.tag_digest)).unwrap();
    Fixture {
        key: sealed.key.clone(),
        dir,
        model,
        enc,
    }
}

/// Open into `<dir>/out/model.zip` and check that, on failure, `out` stays empty (no plaintext left).
fn open_checked(f: &Fixture, key: &DeliverableKey, signer: Address) -> Result<PathBuf, OpenError> {
    let out = f.dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let zip = out.join("model.zip");
    let result = deliverable::open_file_with(
        &f.enc,
        &zip,
        key,
        signer,
        ChunkLen::for_tests(1000).unwrap(),
    );
    if result.is_err() {
        let left: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
        assert!(left.is_empty(), "plaintext left behind: {left:?}");
    }
    result.map(|_| zip)
}

fn flip(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

const CHUNK: u64 = 1000 + 16;
const HEADER: u64 = 77;

#[test]
fn sealed_model_round_trips_through_many_chunks() {
    let f = sealed_fixture(10_500);
    let zip = open_checked(&f, &f.key, tee_address()).unwrap();
    let out = f.dir.path().join("extracted");
    let unzipped = deliverable::unzip_safely(&zip, &out, &UnzipLimits::default()).unwrap();
    assert_eq!(unzipped.files, 2);
    assert_eq!(
        std::fs::read(out.join("output_model/sub/weights.bin")).unwrap(),
        std::fs::read(f.model.join("sub/weights.bin")).unwrap()
    );
    assert_eq!(
        std::fs::read(out.join("output_model/config.json")).unwrap(),
        b"{}"
    );
}

#[test]
fn sealed_file_length_matches_the_layout_and_tag_digest_is_recomputable() {
    let f = sealed_fixture(5000);
    let len = std::fs::metadata(&f.enc).unwrap().len();
    let mut file = std::fs::File::open(&f.enc).unwrap();
    let digest = deliverable::tag_digest(&mut file, ChunkLen::for_tests(1000).unwrap()).unwrap();
    let zip = open_checked(&f, &f.key, tee_address()).unwrap();
    let zip_len = std::fs::metadata(zip).unwrap().len();
    let chunks = zip_len.div_ceil(1000);
    assert_eq!(len, HEADER + zip_len + 16 * chunks);
    // the signature at the front signs exactly this digest
    let sig = sealtune_protocol::sig::Signature::from_bytes(&std::fs::read(&f.enc).unwrap()[..65])
        .unwrap();
    assert_eq!(sig.recover_address(&digest).unwrap(), tee_address());
    assert_eq!(std::fs::read(&f.enc).unwrap()[64], digest_v(&sig));
    assert_eq!(
        deliverable::encrypted_file_keccak(&f.enc).unwrap(),
        keccak256(std::fs::read(&f.enc).unwrap())
    );
}

fn digest_v(sig: &sealtune_protocol::sig::Signature) -> u8 {
    sig.to_bytes_v01()[64]
}

#[test]
fn a_plaintext_that_fills_whole_chunks_has_no_empty_trailing_chunk() {
    // seal a stream with 1-byte chunks: every chunk is full
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("m")).unwrap();
    let mut out = Vec::new();
    let opts = SealOptions {
        chunk_len: ChunkLen::for_tests(1).unwrap(),
        ..SealOptions::default()
    };
    let sealed = deliverable::seal_dir(&dir.path().join("m"), &mut out, &mut OsRng, &opts).unwrap();
    assert_eq!(sealed.chunks, sealed.zip_len);
    assert_eq!(out.len() as u64, sealed.file_len);
    deliverable::finish_writer(
        Cursor::new(&mut out),
        &deliverable::sign_tags(&tee(), &sealed.tag_digest),
    )
    .unwrap();
    let mut plain = Vec::new();
    let opened = deliverable::open(
        &mut Cursor::new(&out),
        &mut plain,
        &sealed.key,
        tee_address(),
        opts.chunk_len,
    )
    .unwrap();
    assert_eq!(opened.plaintext_len, sealed.zip_len);
}

#[test]
fn truncated_file_is_reported_as_truncated() {
    let f = sealed_fixture(5000);
    let len = std::fs::metadata(&f.enc).unwrap().len();
    for cut in [5, 100] {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&f.enc)
            .unwrap();
        file.set_len(len - cut).unwrap();
        let err = open_checked(&f, &f.key, tee_address()).unwrap_err();
        assert!(
            matches!(err, OpenError::Truncated { .. }),
            "cut {cut}: {err}"
        );
    }
    for short in [0, 50, 77, 80] {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&f.enc)
            .unwrap()
            .set_len(short)
            .unwrap();
        let err = open_checked(&f, &f.key, tee_address()).unwrap_err();
        assert!(
            matches!(err, OpenError::Truncated { .. }),
            "len {short}: {err}"
        );
        assert!(err.to_string().contains("truncated"));
    }
}

#[test]
fn flipped_ciphertext_byte_in_any_chunk_is_a_corrupted_chunk() {
    let f = sealed_fixture(5000);
    let original = std::fs::read(&f.enc).unwrap();
    let chunks = (original.len() as u64 - HEADER).div_ceil(CHUNK);
    for index in 0..chunks {
        std::fs::write(&f.enc, &original).unwrap();
        flip(&f.enc, HEADER + index * CHUNK + 3);
        let err = open_checked(&f, &f.key, tee_address()).unwrap_err();
        if index == 0 {
            assert!(matches!(err, OpenError::WrongKey), "{err}");
        } else {
            assert!(
                matches!(err, OpenError::CorruptedChunk { index: i } if i == index),
                "{err}"
            );
        }
    }
}

#[test]
fn flipped_tag_byte_breaks_the_tag_signature() {
    let f = sealed_fixture(5000);
    flip(&f.enc, HEADER + CHUNK - 1);
    let err = open_checked(&f, &f.key, tee_address()).unwrap_err();
    assert!(matches!(err, OpenError::WrongSigner { .. }), "{err}");
}

#[test]
fn tampered_tag_signature_is_rejected() {
    let f = sealed_fixture(5000);
    let original = std::fs::read(&f.enc).unwrap();
    for offset in [0, 31, 40, 64] {
        std::fs::write(&f.enc, &original).unwrap();
        flip(&f.enc, offset);
        let err = open_checked(&f, &f.key, tee_address()).unwrap_err();
        assert!(
            matches!(
                err,
                OpenError::MalformedTagSignature(_) | OpenError::WrongSigner { .. }
            ),
            "offset {offset}: {err}"
        );
    }
    // never signed: the zeroed placeholder
    let mut bytes = original.clone();
    bytes[..65].fill(0);
    std::fs::write(&f.enc, bytes).unwrap();
    let err = open_checked(&f, &f.key, tee_address()).unwrap_err();
    assert!(matches!(err, OpenError::Unsigned), "{err}");
    assert!(err.to_string().contains("never signed"));
}

#[test]
fn deliverable_from_another_signer_is_rejected() {
    let f = sealed_fixture(3000);
    let other = address_of(SigningKey::from_slice(&[0x99; 32]).unwrap().verifying_key());
    let err = open_checked(&f, &f.key, other).unwrap_err();
    match err {
        OpenError::WrongSigner {
            expected,
            recovered,
        } => {
            assert_eq!(expected, other);
            assert_eq!(recovered, tee_address());
        }
        e => panic!("{e}"),
    }
}

#[test]
fn wrong_key_is_reported_as_wrong_key() {
    let f = sealed_fixture(3000);
    let err = open_checked(&f, &DeliverableKey::from_bytes([1; 32]), tee_address()).unwrap_err();
    assert!(matches!(err, OpenError::WrongKey), "{err}");
    assert!(err.to_string().contains("wrong key"));
}

#[test]
fn opening_replaces_nothing_on_failure_and_succeeds_after() {
    let f = sealed_fixture(3000);
    let out = f.dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("model.zip"), b"previous").unwrap();
    let err = deliverable::open_file_with(
        &f.enc,
        &out.join("model.zip"),
        &DeliverableKey::from_bytes([2; 32]),
        tee_address(),
        ChunkLen::for_tests(1000).unwrap(),
    );
    assert!(err.is_err());
    assert_eq!(std::fs::read(out.join("model.zip")).unwrap(), b"previous");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
}

#[test]
fn sealing_refuses_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", model.join("leak")).unwrap();
    let enc = dir.path().join("model.enc");
    let err = deliverable::seal_dir_to_file(&model, &enc, &mut OsRng, &SealOptions::default())
        .unwrap_err();
    assert!(
        matches!(err, deliverable::SealError::UnsupportedEntry(_)),
        "{err}"
    );
    assert!(!enc.exists(), "partial sealed file left behind");
}

#[test]
fn the_same_rng_gives_the_same_sealed_file() {
    struct Fixed(u8);
    impl rand_core::RngCore for Fixed {
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
    impl rand_core::CryptoRng for Fixed {}
    let f = sealed_fixture(2000);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let ka = deliverable::seal_dir(&f.model, &mut a, &mut Fixed(0), &small_chunks()).unwrap();
    let kb = deliverable::seal_dir(&f.model, &mut b, &mut Fixed(0), &small_chunks()).unwrap();
    assert_eq!(a, b);
    assert_eq!(ka.key, kb.key);
    assert_eq!(ka.key.as_bytes()[0], 1);
    assert_eq!(
        &a[65..77],
        &(33u8..45).collect::<Vec<_>>()[..],
        "the IV follows the key from the RNG"
    );
}

// ---- unzip ------------------------------------------------------------------------------------------

fn zip_with(entries: &[(&str, &[u8])]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.zip");
    let mut w = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    for (name, data) in entries {
        w.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut w, data).unwrap();
    }
    w.finish().unwrap();
    (dir, path)
}

#[test]
fn unzip_refuses_paths_that_escape() {
    for name in [
        "../evil",
        "output_model/../../evil",
        "/abs/evil",
        "..\\evil",
    ] {
        let (dir, zip) = zip_with(&[("output_model/ok", b"1"), (name, b"x")]);
        let dest = dir.path().join("dest");
        let err = deliverable::unzip_safely(&zip, &dest, &UnzipLimits::default()).unwrap_err();
        assert!(matches!(err, UnzipError::UnsafePath(_)), "{name}: {err}");
        assert!(!dest.exists(), "half-extracted output left behind");
        assert!(!dir.path().join("evil").exists());
    }
}

#[test]
fn unzip_stops_at_the_size_and_entry_limits() {
    let big = vec![0u8; 1 << 20];
    let (dir, zip) = zip_with(&[("output_model/a", &big), ("output_model/b", &big)]);
    let limits = UnzipLimits {
        max_total_bytes: 1_500_000,
        ..UnzipLimits::default()
    };
    let err = deliverable::unzip_safely(&zip, &dir.path().join("d1"), &limits).unwrap_err();
    assert!(matches!(err, UnzipError::TooLarge(_)), "{err}");
    assert!(!dir.path().join("d1").exists());
    let limits = UnzipLimits {
        max_entries: 1,
        ..UnzipLimits::default()
    };
    let err = deliverable::unzip_safely(&zip, &dir.path().join("d2"), &limits).unwrap_err();
    assert!(matches!(err, UnzipError::TooManyEntries(2, 1)), "{err}");
    deliverable::unzip_safely(&zip, &dir.path().join("d3"), &UnzipLimits::default()).unwrap();
    let err = deliverable::unzip_safely(&zip, &dir.path().join("d3"), &UnzipLimits::default())
        .unwrap_err();
    assert!(matches!(err, UnzipError::DestinationExists(_)), "{err}");
}

#[test]
fn unzip_refuses_symlink_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.zip");
    let mut w = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    w.add_symlink(
        "output_model/link",
        "/etc/passwd",
        zip::write::SimpleFileOptions::default(),
    )
    .unwrap();
    w.finish().unwrap();
    let err = deliverable::unzip_safely(&path, &dir.path().join("d"), &UnzipLimits::default())
        .unwrap_err();
    assert!(matches!(err, UnzipError::Symlink(_)), "{err}");
}

// ---- properties ---------------------------------------------------------------------------------------

/// A small sealed file in 64-byte chunks (several chunks) held in memory.
fn sealed_bytes() -> (Vec<u8>, DeliverableKey, Vec<u8>) {
    let f = sealed_fixture(300);
    let opts = SealOptions {
        chunk_len: ChunkLen::for_tests(64).unwrap(),
        ..SealOptions::default()
    };
    let mut out = Vec::new();
    let sealed = deliverable::seal_dir(&f.model, &mut out, &mut OsRng, &opts).unwrap();
    deliverable::finish_writer(
        Cursor::new(&mut out),
        &deliverable::sign_tags(&tee(), &sealed.tag_digest),
    )
    .unwrap();
    let mut plain = Vec::new();
    deliverable::open(
        &mut Cursor::new(&out),
        &mut plain,
        &sealed.key,
        tee_address(),
        opts.chunk_len,
    )
    .unwrap();
    (out, sealed.key.clone(), plain)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn opener_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600), chunk in 1usize..100) {
        let mut out = Vec::new();
        let r = deliverable::open(&mut Cursor::new(&bytes), &mut out, &DeliverableKey::from_bytes([7; 32]), tee_address(), ChunkLen::for_tests(chunk).unwrap());
        prop_assert!(r.is_err());
    }

    #[test]
    fn mutated_sealed_file_never_opens_to_other_plaintext(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        thread_local! {
            static SEALED: (Vec<u8>, DeliverableKey, Vec<u8>) = sealed_bytes();
        }
        SEALED.with(|(sealed, key, plain)| {
            let mut bytes = sealed.clone();
            for (at, x) in &edits {
                let i = at.index(bytes.len());
                bytes[i] ^= x;
            }
            if let Some(c) = cut {
                bytes.truncate(c.index(bytes.len()));
            }
            let mut out = Vec::new();
            let r = deliverable::open(&mut Cursor::new(&bytes), &mut out, key, tee_address(), ChunkLen::for_tests(64).unwrap());
            if r.is_ok() {
                // only a no-op edit or v 0 <-> 27 style re-encoding of the same signature can open
                prop_assert_eq!(&out, plain);
            }
            Ok(())
        })?;
    }
}
