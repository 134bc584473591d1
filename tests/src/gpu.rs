//! Synthetic NVIDIA-shaped GPU evidence for tests and benches: a test PKI shaped like NVIDIA's
//! (root → identity → provisioner, shared; device → attestation leaf, per GPU; P-384 throughout;
//! the leaf carries a DICE FWID extension) and SPDM 1.1 GET_MEASUREMENTS reports signed by each
//! leaf over any nonce. The real H100 sample (tests/fixtures/nvidia) has a fixed nonce; this makes
//! the bound path (nonce derived from the verifier's, several GPUs) testable. Not NVIDIA's keys.

use p384::ecdsa::{Signature, SigningKey, signature::Signer as _};
use p384::pkcs8::EncodePrivateKey as _;
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, IsCa, KeyPair,
    KeyUsagePurpose, SerialNumber,
};

/// Everything a test needs: the root to pin and, per GPU, (report, PEM chain leaf first).
pub struct SyntheticGpus {
    /// The test root (DER), to pass as the pinned root.
    pub root_der: Vec<u8>,
    /// Per GPU: the SPDM report and its PEM chain.
    pub gpus: Vec<(Vec<u8>, String)>,
}

/// Valid from 2024-01-01 to 2030-01-01.
pub const SYNTHETIC_GPU_AT: u64 = 1_717_200_000;

fn key(seed: u8) -> (SigningKey, KeyPair) {
    let sk = SigningKey::from_slice(&[seed; 48]).expect("scalar");
    let der = sk.to_pkcs8_der().expect("pkcs8");
    let kp = KeyPair::try_from(der.as_bytes()).expect("rcgen key");
    (sk, kp)
}

fn params(cn: &str, serial: u64, ca: bool) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut d = DistinguishedName::new();
    d.push(DnType::CommonName, cn);
    d.push(DnType::OrganizationName, "sealtune test PKI (not NVIDIA)");
    p.distinguished_name = d;
    p.is_ca = if ca {
        IsCa::Ca(BasicConstraints::Unconstrained)
    } else {
        IsCa::ExplicitNoCa
    };
    p.key_usages = if ca {
        vec![KeyUsagePurpose::KeyCertSign]
    } else {
        vec![KeyUsagePurpose::DigitalSignature]
    };
    p.not_before = time_at(1_704_067_200);
    p.not_after = time_at(1_893_456_000);
    p.serial_number = Some(SerialNumber::from(serial));
    p
}

fn time_at(unix: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(unix).expect("time")
}

/// Most GPUs [`synthetic_gpus`] makes.
pub const MAX_SYNTHETIC_GPUS: u8 = 8;

/// The test PKI, made once per process (rcgen's ECDSA signatures are randomised: a second PKI
/// would have another root).
struct Pki {
    root_der: Vec<u8>,
    /// Per GPU: leaf key, FWID, PEM chain.
    gpus: Vec<(SigningKey, [u8; 48], String)>,
}

fn pki() -> &'static Pki {
    static PKI: std::sync::OnceLock<Pki> = std::sync::OnceLock::new();
    PKI.get_or_init(make_pki)
}

fn make_pki() -> Pki {
    let (_, root_kp) = key(1);
    let root = params("Test Device Identity CA", 1, true)
        .self_signed(&root_kp)
        .expect("root");
    let (_, id_kp) = key(2);
    let identity = params("Test GH100 Identity", 2, true)
        .signed_by(&id_kp, &root, &root_kp)
        .expect("identity");
    let (_, prov_kp) = key(3);
    let provisioner = params("Test GH100 Provisioner ICA", 3, true)
        .signed_by(&prov_kp, &identity, &id_kp)
        .expect("provisioner");
    let mut gpus = Vec::new();
    for i in 0..MAX_SYNTHETIC_GPUS {
        let (_, dev_kp) = key(i * 2 + 10);
        let device = params(&format!("Test GSP BROM {i}"), 100 + u64::from(i), true)
            .signed_by(&dev_kp, &provisioner, &prov_kp)
            .expect("device");
        let (leaf_sk, leaf_kp) = key(i * 2 + 11);
        let fwid = [i; 48];
        let mut lp = params(&format!("Test GSP FMC LF {i}"), 200 + u64::from(i), false);
        let mut ext = vec![0x04, 0x30];
        ext.extend_from_slice(&fwid);
        lp.custom_extensions = vec![CustomExtension::from_oid_content(
            &[2, 23, 133, 5, 4, 1],
            ext,
        )];
        let leaf = lp.signed_by(&leaf_kp, &device, &dev_kp).expect("leaf");
        let chain = [&leaf, &device, &provisioner, &identity, &root]
            .iter()
            .map(|c| c.pem())
            .collect::<String>();
        gpus.push((leaf_sk, fwid, chain));
    }
    Pki {
        root_der: root.der().to_vec(),
        gpus,
    }
}

/// `n` (at most [`MAX_SYNTHETIC_GPUS`]) GPUs whose reports sign `nonce`; GPU `i`'s FWID is
/// `[i; 48]`. The PKI is the same for every call in a process.
pub fn synthetic_gpus(n: u8, nonce: [u8; 32]) -> SyntheticGpus {
    let pki = pki();
    SyntheticGpus {
        root_der: pki.root_der.clone(),
        gpus: pki
            .gpus
            .iter()
            .take(usize::from(n))
            .map(|(sk, fwid, chain)| (spdm_report(sk, nonce, *fwid), chain.clone()))
            .collect(),
    }
}

/// An SPDM 1.1 GET_MEASUREMENTS request and MEASUREMENTS response over `nonce`, with two
/// SHA-384 blocks (index 1: `[0x11; 48]`, index 2: `[0x22; 48]`), driver 560.35.03,
/// VBIOS 96.00.9f.00.01 and `fwid`, signed with `key`.
pub fn spdm_report(key: &SigningKey, nonce: [u8; 32], fwid: [u8; 48]) -> Vec<u8> {
    let mut out = vec![0x11, 0xe0, 0x01, 0xff];
    out.extend_from_slice(&nonce);
    out.push(0);
    out.extend_from_slice(&[0x11, 0x60, 0x00, 0x00, 2]);
    let mut record = Vec::new();
    for (index, byte) in [(1u8, 0x11u8), (2, 0x22)] {
        record.extend_from_slice(&[index, 1, 51, 0, 1, 48, 0]);
        record.extend_from_slice(&[byte; 48]);
    }
    let len = u32::try_from(record.len()).expect("len").to_le_bytes();
    out.extend_from_slice(&len[..3]);
    out.extend_from_slice(&record);
    out.extend_from_slice(&[0x5a; 32]);
    let mut opaque = Vec::new();
    for (kind, value) in [
        (3u16, b"560.35.03\0".to_vec()),
        (6, vec![0x00, 0x9f, 0x00, 0x96, 0x01, 0, 0, 0]),
        (20, fwid.to_vec()),
    ] {
        opaque.extend_from_slice(&kind.to_le_bytes());
        opaque.extend_from_slice(&u16::try_from(value.len()).expect("len").to_le_bytes());
        opaque.extend_from_slice(&value);
    }
    out.extend_from_slice(&u16::try_from(opaque.len()).expect("len").to_le_bytes());
    out.extend_from_slice(&opaque);
    let sig: Signature = key.sign(&out);
    out.extend_from_slice(&sig.to_bytes());
    out
}
