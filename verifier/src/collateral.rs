//! Collateral: fetched from a PCCS or Intel PCS (API v4), kept in an on-disk cache keyed by TEE
//! type, FMSPC and PCK CA that honours the collateral's `nextUpdate`, or read from a file.
//!
//! Endpoints (relative to the PCCS base URL):
//! - `sgx/certification/v4/pckcrl?ca={processor|platform}&encoding=der` → PCK CRL, header
//!   `SGX-PCK-CRL-Issuer-Chain`;
//! - `{tdx|sgx}/certification/v4/tcb?fmspc=…` → `{"tcbInfo": …, "signature": hex}`, header
//!   `TCB-Info-Issuer-Chain` (or `SGX-TCB-Info-Issuer-Chain`);
//! - `{tdx|sgx}/certification/v4/qe/identity` → `{"enclaveIdentity": …, "signature": hex}`, header
//!   `SGX-Enclave-Identity-Issuer-Chain`;
//! - `sgx/certification/v4/rootcacrl` → root CA CRL (hex or DER); for Intel PCS the CRL is read from
//!   Intel's certificate site instead.
//!
//! The signed JSON (`tcbInfo`, `enclaveIdentity`) is kept byte for byte as served: its signature
//! covers those exact bytes. Issuer chains are URL-decoded. What is fetched is verified like any
//! other collateral (dcap-qvl checks every signature and chain), so the cache is not trusted either.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dcap_qvl::QuoteCollateralV3;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::pck::PckInfo;
use crate::quote::ParsedQuote;

/// Intel's Provisioning Certification Service.
pub const INTEL_PCS_URL: &str = "https://api.trustedservices.intel.com";
/// Where Intel publishes the SGX root CA CRL (used with Intel PCS, which has no `rootcacrl`).
pub const INTEL_ROOT_CA_CRL_URL: &str =
    "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der";

/// Why collateral could not be obtained.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CollateralError {
    /// The quote's own reading (needed for FMSPC and CA) failed.
    #[error("cannot tell which collateral the quote needs: {0}")]
    Quote(String),
    /// The HTTP request failed.
    #[error("GET {url}: {message}")]
    Http {
        /// The URL.
        url: String,
        /// The transport's error.
        message: String,
    },
    /// The server answered with an error status.
    #[error("GET {url}: HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// A required header is missing or malformed.
    #[error("GET {url}: header {header} missing or malformed")]
    Header {
        /// The URL.
        url: String,
        /// The header.
        header: &'static str,
    },
    /// The body is malformed.
    #[error("GET {url}: {message}")]
    Body {
        /// The URL.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// The cache could not be read or written.
    #[error("collateral cache {path}: {message}")]
    Cache {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// `--offline` and nothing usable in the cache.
    #[error("offline: {0}")]
    Offline(String),
}

/// Which TEE's endpoints serve the TCB info and QE identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tee {
    /// SGX.
    Sgx,
    /// TDX.
    Tdx,
}

impl Tee {
    fn as_str(self) -> &'static str {
        match self {
            Tee::Sgx => "sgx",
            Tee::Tdx => "tdx",
        }
    }
}

/// What collateral a quote needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollateralKey {
    /// TEE type.
    pub tee: Tee,
    /// FMSPC (12 hex digits, lower case).
    pub fmspc: String,
    /// PCK CA: `processor` or `platform`.
    pub ca: &'static str,
}

impl CollateralKey {
    /// The key of a parsed quote and its PCK leaf.
    pub fn of(quote: &ParsedQuote, pck: &PckInfo) -> Self {
        let tee = if quote.header.tee_type == 0x81 {
            Tee::Tdx
        } else {
            Tee::Sgx
        };
        let issuer = pck
            .chain
            .first()
            .map(|c| c.issuer.to_ascii_lowercase())
            .unwrap_or_default();
        let ca = if issuer.contains("platform") {
            "platform"
        } else {
            "processor"
        };
        Self {
            tee,
            fmspc: pck.fmspc.to_ascii_lowercase(),
            ca,
        }
    }

    /// Read a quote's key (parses the quote and its PCK chain).
    pub fn of_quote(quote: &[u8]) -> Result<Self, CollateralError> {
        let q = ParsedQuote::parse(quote).map_err(|e| CollateralError::Quote(e.to_string()))?;
        let pck = crate::pck::parse_pck_chain(&q.cert_data)
            .map_err(|e| CollateralError::Quote(e.to_string()))?;
        Ok(Self::of(&q, &pck))
    }

    fn file_name(&self) -> String {
        format!("{}-{}-{}.json", self.tee.as_str(), self.fmspc, self.ca)
    }
}

fn rfc3339(s: &str) -> Option<u64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp()).ok()
}

fn crl_next_update(der: &[u8]) -> Option<u64> {
    let (_, crl) = x509_parser::parse_x509_crl(der).ok()?;
    u64::try_from(crl.next_update()?.timestamp()).ok()
}

fn json_next_update(json: &str) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    rfc3339(v.get("nextUpdate")?.as_str()?)
}

/// The earliest `nextUpdate` of the collateral (TCB info, QE identity, PCK CRL, root CA CRL):
/// after it, fresh collateral must be fetched. `None` when none of them can be read.
pub fn next_update(c: &QuoteCollateralV3) -> Option<u64> {
    [
        json_next_update(&c.tcb_info),
        json_next_update(&c.qe_identity),
        crl_next_update(&c.pck_crl),
        crl_next_update(&c.root_ca_crl),
    ]
    .into_iter()
    .flatten()
    .min()
}

/// The on-disk cache: one JSON file per [`CollateralKey`], in dcap-qvl's collateral format.
#[derive(Debug, Clone)]
pub struct CollateralCache {
    dir: PathBuf,
}

/// A cache lookup.
#[derive(Debug, Clone)]
pub enum Cached {
    /// Valid until the given time.
    Fresh(Box<QuoteCollateralV3>, u64),
    /// Past its `nextUpdate` (the time given).
    Stale(Box<QuoteCollateralV3>, u64),
    /// Not in the cache.
    Missing,
}

impl CollateralCache {
    /// A cache in `dir` (created on the first store).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The file holding `key`'s collateral.
    pub fn path(&self, key: &CollateralKey) -> PathBuf {
        self.dir.join(key.file_name())
    }

    /// Look `key` up at time `now`. A corrupt entry is an error (never silently ignored).
    pub fn load(&self, key: &CollateralKey, now: u64) -> Result<Cached, CollateralError> {
        let path = self.path(key);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Cached::Missing),
            Err(e) => return Err(cache_err(&path, e.to_string())),
        };
        let c: QuoteCollateralV3 =
            serde_json::from_slice(&bytes).map_err(|e| cache_err(&path, e.to_string()))?;
        let until = next_update(&c)
            .ok_or_else(|| cache_err(&path, "no readable nextUpdate".to_string()))?;
        Ok(if now < until {
            Cached::Fresh(Box::new(c), until)
        } else {
            Cached::Stale(Box::new(c), until)
        })
    }

    /// Store `c` for `key` (written to a temporary file, then renamed).
    pub fn store(&self, key: &CollateralKey, c: &QuoteCollateralV3) -> Result<(), CollateralError> {
        let path = self.path(key);
        std::fs::create_dir_all(&self.dir).map_err(|e| cache_err(&self.dir, e.to_string()))?;
        let json = serde_json::to_vec(c).map_err(|e| cache_err(&path, e.to_string()))?;
        let tmp = path.with_extension(format!("json.tmp{}", std::process::id()));
        std::fs::write(&tmp, json)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                cache_err(&path, e.to_string())
            })
    }
}

fn cache_err(path: &Path, message: String) -> CollateralError {
    CollateralError::Cache {
        path: path.display().to_string(),
        message,
    }
}

/// Percent-decoding of the issuer-chain headers.
fn url_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0usize;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let h = b.get(i.checked_add(1)?..i.checked_add(3)?)?;
            let h = std::str::from_utf8(h).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i = i.checked_add(3)?;
        } else {
            out.push(c);
            i = i.checked_add(1)?;
        }
    }
    String::from_utf8(out).ok()
}

/// A CRL body as PCCSs serve it: DER, hex of DER, or PEM.
fn crl_der(body: &[u8]) -> Option<Vec<u8>> {
    let t = body.trim_ascii();
    if t.starts_with(b"-----BEGIN") {
        let (_, pem) = x509_parser::pem::parse_x509_pem(t).ok()?;
        return Some(pem.contents);
    }
    if !t.is_empty() && t.iter().all(u8::is_ascii_hexdigit) {
        return hex::decode(t).ok();
    }
    Some(body.to_vec())
}

#[derive(Deserialize)]
struct SignedTcbInfo<'a> {
    #[serde(rename = "tcbInfo", borrow)]
    tcb_info: &'a RawValue,
    signature: String,
}

#[derive(Deserialize)]
struct SignedQeIdentity<'a> {
    #[serde(rename = "enclaveIdentity", borrow)]
    identity: &'a RawValue,
    signature: String,
}

/// A PCCS / Intel PCS client.
#[derive(Debug, Clone)]
pub struct Pccs {
    base: String,
    http: reqwest::Client,
}

struct Got {
    url: String,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, names: &[&'static str]) -> Result<String, CollateralError> {
        let first = names.first().copied().unwrap_or("?");
        names
            .iter()
            .find_map(|n| self.headers.get(*n))
            .and_then(|v| v.to_str().ok())
            .and_then(url_decode)
            .ok_or(CollateralError::Header {
                url: self.url.clone(),
                header: first,
            })
    }
    fn body_err(&self, message: impl Into<String>) -> CollateralError {
        CollateralError::Body {
            url: self.url.clone(),
            message: message.into(),
        }
    }
}

impl Pccs {
    /// A client for the PCCS at `base` (e.g. `https://pccs.example:8081`, or [`INTEL_PCS_URL`]);
    /// a trailing `/sgx/certification/v4` or `/tdx/certification/v4` is ignored.
    pub fn new(base: &str) -> Result<Self, CollateralError> {
        let base = base
            .trim_end_matches('/')
            .trim_end_matches("/sgx/certification/v4")
            .trim_end_matches("/tdx/certification/v4")
            .to_owned();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| CollateralError::Http {
                url: base.clone(),
                message: e.to_string(),
            })?;
        Ok(Self { base, http })
    }

    async fn get(&self, url: String) -> Result<Got, CollateralError> {
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| CollateralError::Http {
                url: url.clone(),
                message: e.to_string(),
            })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(CollateralError::Status {
                url,
                status: status.as_u16(),
            });
        }
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .map_err(|e| CollateralError::Http {
                url: url.clone(),
                message: e.to_string(),
            })?
            .to_vec();
        Ok(Got { url, headers, body })
    }

    /// Fetch the collateral for `key`.
    pub async fn fetch(&self, key: &CollateralKey) -> Result<QuoteCollateralV3, CollateralError> {
        let b = &self.base;
        let tee = key.tee.as_str();
        let fmspc = key.fmspc.to_ascii_uppercase();

        let crl = self
            .get(format!(
                "{b}/sgx/certification/v4/pckcrl?ca={}&encoding=der",
                key.ca
            ))
            .await?;
        let pck_crl_issuer_chain = crl.header(&["SGX-PCK-CRL-Issuer-Chain"])?;
        let pck_crl =
            crl_der(&crl.body).ok_or_else(|| crl.body_err("PCK CRL is not DER, hex or PEM"))?;

        let tcb = self
            .get(format!("{b}/{tee}/certification/v4/tcb?fmspc={fmspc}"))
            .await?;
        let tcb_info_issuer_chain =
            tcb.header(&["TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"])?;
        let signed: SignedTcbInfo<'_> = serde_json::from_slice(&tcb.body)
            .map_err(|e| tcb.body_err(format!("not a signed TCB info: {e}")))?;
        let tcb_info = signed.tcb_info.get().to_owned();
        let tcb_info_signature = hex::decode(signed.signature.trim())
            .map_err(|e| tcb.body_err(format!("TCB info signature is not hex: {e}")))?;

        let qe = self
            .get(format!("{b}/{tee}/certification/v4/qe/identity"))
            .await?;
        let qe_identity_issuer_chain = qe.header(&["SGX-Enclave-Identity-Issuer-Chain"])?;
        let signed: SignedQeIdentity<'_> = serde_json::from_slice(&qe.body)
            .map_err(|e| qe.body_err(format!("not a signed QE identity: {e}")))?;
        let qe_identity = signed.identity.get().to_owned();
        let qe_identity_signature = hex::decode(signed.signature.trim())
            .map_err(|e| qe.body_err(format!("QE identity signature is not hex: {e}")))?;

        let root_url = if b.starts_with(INTEL_PCS_URL) {
            INTEL_ROOT_CA_CRL_URL.to_owned()
        } else {
            format!("{b}/sgx/certification/v4/rootcacrl")
        };
        let root = self.get(root_url).await?;
        let root_ca_crl = crl_der(&root.body)
            .ok_or_else(|| root.body_err("root CA CRL is not DER, hex or PEM"))?;

        Ok(QuoteCollateralV3 {
            pck_crl_issuer_chain,
            root_ca_crl,
            pck_crl,
            tcb_info_issuer_chain,
            tcb_info,
            tcb_info_signature,
            qe_identity_issuer_chain,
            qe_identity,
            qe_identity_signature,
            pck_certificate_chain: None,
        })
    }
}

/// Where collateral may come from.
#[derive(Debug, Clone, Default)]
pub struct CollateralSource {
    /// PCCS base URL (`None`: Intel PCS).
    pub pccs_url: Option<String>,
    /// Cache directory (`None`: no cache).
    pub cache_dir: Option<PathBuf>,
    /// Never touch the network.
    pub offline: bool,
}

/// Collateral for `quote` at time `now`: from the cache while fresh, else fetched (and cached);
/// with `offline`, only the cache, and a stale or missing entry is an error that says so.
/// Returns the collateral and a line saying where it came from.
pub async fn obtain(
    quote: &[u8],
    source: &CollateralSource,
    now: u64,
) -> Result<(QuoteCollateralV3, String), CollateralError> {
    let key = CollateralKey::of_quote(quote)?;
    let cache = source.cache_dir.as_ref().map(CollateralCache::new);
    let mut stale = None;
    if let Some(cache) = &cache {
        match cache.load(&key, now)? {
            Cached::Fresh(c, until) => {
                return Ok((
                    *c,
                    format!("cache {} (valid until {until})", cache.path(&key).display()),
                ));
            }
            Cached::Stale(_, until) => stale = Some(until),
            Cached::Missing => {}
        }
    }
    if source.offline {
        return Err(CollateralError::Offline(match (&cache, stale) {
            (None, _) => "no --collateral file and no --cache directory".to_owned(),
            (Some(c), Some(until)) => format!(
                "cached collateral {} expired at {until} (nextUpdate); refresh it online",
                c.path(&key).display()
            ),
            (Some(c), None) => format!(
                "no cached collateral for FMSPC {} ({} CA, {}) at {}",
                key.fmspc,
                key.ca,
                key.tee.as_str(),
                c.path(&key).display()
            ),
        }));
    }
    let url = source.pccs_url.as_deref().unwrap_or(INTEL_PCS_URL);
    let fetched = Pccs::new(url)?.fetch(&key).await?;
    if let Some(cache) = &cache {
        cache.store(&key, &fetched)?;
    }
    Ok((fetched, format!("fetched from {url}")))
}
