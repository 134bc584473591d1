//! Where the client's settings come from: command-line flags, then environment variables, then the
//! config file (`~/.config/sealtune/config.toml`, or `--config FILE` / `SEALTUNE_CONFIG`).
//!
//! ```toml
//! # ~/.config/sealtune/config.toml
//! rpc = "http://127.0.0.1:8545"
//! ledger = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
//! serving = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
//! keystore = "/home/me/.config/sealtune/customer.json"   # optional; the password comes from SEALTUNE_KEYSTORE_PASSWORD
//! ```
//!
//! The private key itself is never read from the config file: it comes from `--key`, the
//! `SEALTUNE_KEY` environment variable, or an encrypted keystore file.

use std::path::{Path, PathBuf};

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use serde::Deserialize;

use crate::error::ClientError;

/// Environment variable holding the keystore password.
pub const KEYSTORE_PASSWORD_ENV: &str = "SEALTUNE_KEYSTORE_PASSWORD";

/// The config file's contents. Every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// JSON-RPC URL of the chain.
    pub rpc: Option<String>,
    /// LedgerManager address.
    pub ledger: Option<String>,
    /// FineTuningServing address.
    pub serving: Option<String>,
    /// Path of an encrypted JSON keystore.
    pub keystore: Option<PathBuf>,
}

impl ConfigFile {
    /// The default location: `$XDG_CONFIG_HOME/sealtune/config.toml` or `~/.config/sealtune/config.toml`.
    pub fn default_path() -> Option<PathBuf> {
        if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
            return Some(PathBuf::from(x).join("sealtune/config.toml"));
        }
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/sealtune/config.toml"))
    }

    /// Read `path`; with `required = false` a missing file is an empty config.
    pub fn load(path: &Path, required: bool) -> Result<Self, ClientError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(Self::default());
            }
            Err(e) => {
                return Err(ClientError::Config(format!(
                    "cannot read config file {}: {e}",
                    path.display()
                )));
            }
        };
        toml::from_str(&text).map_err(|e| {
            ClientError::Config(format!(
                "config file {}: {e} (known keys: rpc, ledger, serving, keystore)",
                path.display()
            ))
        })
    }
}

/// Where the customer key comes from.
#[derive(Debug, Clone, Default)]
pub enum KeySource {
    /// No key given.
    #[default]
    None,
    /// A hex private key (`--key` / `SEALTUNE_KEY`).
    Hex(String),
    /// An encrypted keystore file and its password.
    Keystore {
        /// The keystore file.
        path: PathBuf,
        /// The password (from `SEALTUNE_KEYSTORE_PASSWORD`); `None` when unset.
        password: Option<String>,
    },
}

impl KeySource {
    /// Load the signer; a missing key is a [`ClientError::Config`] that says how to give one.
    pub fn signer(&self) -> Result<PrivateKeySigner, ClientError> {
        match self {
            KeySource::None => Err(ClientError::Config(
                "no customer key: pass --key 0x…, set SEALTUNE_KEY, or pass --keystore FILE (password in SEALTUNE_KEYSTORE_PASSWORD)".into(),
            )),
            KeySource::Hex(h) => parse_private_key(h),
            KeySource::Keystore { path, password } => {
                let password = password.as_deref().ok_or_else(|| {
                    ClientError::Config(format!(
                        "keystore {} needs its password in {KEYSTORE_PASSWORD_ENV}",
                        path.display()
                    ))
                })?;
                PrivateKeySigner::decrypt_keystore(path, password).map_err(|e| {
                    ClientError::Config(format!(
                        "cannot open keystore {}: {e} (wrong password in {KEYSTORE_PASSWORD_ENV}?)",
                        path.display()
                    ))
                })
            }
        }
    }
}

/// Parse a hex private key (64 hex digits, optional `0x`). The error never echoes the key.
pub fn parse_private_key(text: &str) -> Result<PrivateKeySigner, ClientError> {
    let t = text.trim();
    let t = t.strip_prefix("0x").unwrap_or(t);
    if t.len() != 64 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ClientError::Config(format!(
            "the customer key must be 64 hex digits (optionally 0x-prefixed); got {} characters",
            t.len()
        )));
    }
    t.parse::<PrivateKeySigner>().map_err(|_| {
        ClientError::Config("the customer key is not a valid secp256k1 private key".into())
    })
}

/// Parse an address given as `what` (a flag or field name); mixed-case input must carry a valid
/// EIP-55 checksum.
pub fn parse_address(what: &str, text: &str) -> Result<Address, ClientError> {
    let t = text.trim();
    let bad = |why: String| ClientError::InvalidInput(format!("{what} {text:?}: {why}"));
    let hex = t
        .strip_prefix("0x")
        .ok_or_else(|| bad("an address starts with 0x followed by 40 hex digits".into()))?;
    if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("an address is 0x followed by 40 hex digits".into()));
    }
    let mixed =
        hex.bytes().any(|b| b.is_ascii_lowercase()) && hex.bytes().any(|b| b.is_ascii_uppercase());
    if mixed {
        Address::parse_checksummed(t, None)
            .map_err(|_| bad("wrong EIP-55 checksum (mistyped?)".into()))
    } else {
        t.parse::<Address>().map_err(|e| bad(e.to_string()))
    }
}

/// The chain settings after merging flags, environment and config file.
#[derive(Debug, Clone)]
pub struct Settings {
    /// JSON-RPC URL.
    pub rpc: Option<String>,
    /// LedgerManager address.
    pub ledger: Option<Address>,
    /// FineTuningServing address.
    pub serving: Option<Address>,
    /// The customer key.
    pub key: KeySource,
}

/// Raw values from flags/env (clap has already merged those two), before the config file.
#[derive(Debug, Clone, Default)]
pub struct RawSettings {
    /// `--rpc` / `SEALTUNE_RPC`.
    pub rpc: Option<String>,
    /// `--ledger` / `SEALTUNE_LEDGER`.
    pub ledger: Option<String>,
    /// `--serving` / `SEALTUNE_SERVING`.
    pub serving: Option<String>,
    /// `--key` / `SEALTUNE_KEY`.
    pub key: Option<String>,
    /// `--keystore` / `SEALTUNE_KEYSTORE`.
    pub keystore: Option<PathBuf>,
    /// `SEALTUNE_KEYSTORE_PASSWORD`.
    pub keystore_password: Option<String>,
    /// `--config` / `SEALTUNE_CONFIG`.
    pub config: Option<PathBuf>,
}

impl RawSettings {
    /// Merge with the config file (explicit `--config` must exist; the default path may not) and parse.
    pub fn resolve(self) -> Result<Settings, ClientError> {
        let file = match &self.config {
            Some(p) => ConfigFile::load(p, true)?,
            None => match ConfigFile::default_path() {
                Some(p) => ConfigFile::load(&p, false)?,
                None => ConfigFile::default(),
            },
        };
        let nonempty = |o: Option<String>| o.filter(|s| !s.trim().is_empty());
        let ledger = nonempty(self.ledger).or(file.ledger);
        let serving = nonempty(self.serving).or(file.serving);
        let key = match (nonempty(self.key), self.keystore.or(file.keystore)) {
            (Some(_), Some(_)) => {
                return Err(ClientError::Config(
                    "both a key (--key/SEALTUNE_KEY) and a keystore are given: use one".into(),
                ));
            }
            (Some(k), None) => KeySource::Hex(k),
            (None, Some(path)) => KeySource::Keystore {
                path,
                password: self.keystore_password,
            },
            (None, None) => KeySource::None,
        };
        Ok(Settings {
            rpc: nonempty(self.rpc).or(file.rpc),
            ledger: ledger.map(|l| parse_address("--ledger", &l)).transpose()?,
            serving: serving
                .map(|s| parse_address("--serving", &s))
                .transpose()?,
            key,
        })
    }
}

impl Settings {
    /// The RPC URL, or a [`ClientError::Config`] saying how to set it.
    pub fn rpc(&self) -> Result<&str, ClientError> {
        self.rpc.as_deref().ok_or_else(|| {
            ClientError::Config(
                "no RPC URL: pass --rpc URL, set SEALTUNE_RPC, or put rpc = \"…\" in the config file"
                    .into(),
            )
        })
    }

    /// The contract addresses, or a [`ClientError::Config`] saying how to set them.
    pub fn contracts(&self) -> Result<crate::chain::Contracts, ClientError> {
        let missing = |flag: &str, env: &str, key: &str| {
            ClientError::Config(format!(
                "no {key} contract address: pass {flag} 0x…, set {env}, or put {key} = \"0x…\" in the config file"
            ))
        };
        Ok(crate::chain::Contracts {
            ledger: self
                .ledger
                .ok_or_else(|| missing("--ledger", "SEALTUNE_LEDGER", "ledger"))?,
            serving: self
                .serving
                .ok_or_else(|| missing("--serving", "SEALTUNE_SERVING", "serving"))?,
        })
    }

    /// A read-only connection to the chain (no key needed).
    pub fn connect(&self) -> Result<crate::chain::Chain, ClientError> {
        crate::chain::Chain::connect(self.rpc()?, self.contracts()?, None)
    }

    /// A connection that sends the customer's transactions. The key is checked first: a missing
    /// key is the first thing to tell, before the chain settings.
    pub fn connect_with_key(&self) -> Result<crate::chain::Chain, ClientError> {
        let signer = self.key.signer()?;
        crate::chain::Chain::connect(self.rpc()?, self.contracts()?, Some(signer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_need_0x_40_hex_and_a_valid_checksum_when_mixed_case() {
        let a = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
        assert!(parse_address("--provider", a).is_ok());
        assert!(parse_address("--provider", &a.to_lowercase()).is_ok());
        assert!(parse_address("--provider", "0xF39Fd6e51aad88F6F4ce6aB8827279cffFb92266").is_err());
        assert!(parse_address("--provider", "f39fd6e51aad88f6f4ce6ab8827279cfffb92266").is_err());
        assert!(parse_address("--provider", "0x1234").is_err());
    }

    #[test]
    fn key_errors_never_echo_the_key() {
        let secret = "0xnot-a-key-but-secret-looking-text-abcdef";
        let e = parse_private_key(secret).unwrap_err().to_string();
        assert!(!e.contains("secret-looking"), "{e}");
    }

    #[test]
    fn keystore_opens_with_its_password_only() {
        let dir = tempfile::tempdir().unwrap();
        let key = [0x11u8; 32];
        let (signer, _) = PrivateKeySigner::encrypt_keystore(
            dir.path(),
            &mut rand_core::OsRng,
            key,
            "correct horse",
            Some("customer.json"),
        )
        .unwrap();
        let path = dir.path().join("customer.json");
        let open = |password: Option<&str>| {
            KeySource::Keystore {
                path: path.clone(),
                password: password.map(str::to_owned),
            }
            .signer()
        };
        assert_eq!(
            open(Some("correct horse")).unwrap().address(),
            signer.address()
        );
        let e = open(Some("wrong")).unwrap_err();
        assert_eq!(e.kind(), "config");
        let e = open(None).unwrap_err().to_string();
        assert!(e.contains(KEYSTORE_PASSWORD_ENV), "{e}");
        // A key and a keystore together are ambiguous.
        std::fs::write(dir.path().join("none.toml"), "").unwrap();
        let raw = RawSettings {
            key: Some(format!("0x{}", hex::encode(key))),
            keystore: Some(path.clone()),
            config: Some(dir.path().join("none.toml")),
            ..Default::default()
        };
        let e = raw.resolve().unwrap_err().to_string();
        assert!(e.contains("use one"), "{e}");
    }

    #[test]
    fn config_file_rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "rpc = \"http://x\"\nkey = \"0xabc\"\n").unwrap();
        assert!(ConfigFile::load(&p, true).is_err());
        std::fs::write(&p, "rpc = \"http://x\"\n").unwrap();
        assert_eq!(
            ConfigFile::load(&p, true).unwrap().rpc.as_deref(),
            Some("http://x")
        );
        assert!(ConfigFile::load(&dir.path().join("missing.toml"), true).is_err());
        assert_eq!(
            ConfigFile::load(&dir.path().join("missing.toml"), false).unwrap(),
            ConfigFile::default()
        );
    }
}
