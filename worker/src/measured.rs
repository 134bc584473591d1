//! The measured configuration: everything in the config that decides code or data inside the TEE —
//! training scripts, tokenizers, served usage files, model weights — is read **once, at start**,
//! hashed, and kept: the bytes hashed are copied into `<data_dir>/measured/` (root-owned, read-only
//! for others), and the configuration the worker runs with is rewritten to point at those copies, so
//! a file swapped at its original place later is never used. The result is a
//! [`ConfigDocument`](sealtune_protocol::attestation::ConfigDocument) whose hash (the **config hash**)
//! is recorded before the worker serves anything (see `attest`: an RTMR3 event on dstack, the
//! attestation document everywhere, and the TEE signer's key path).
//!
//! The asset rule: every path the config names (script, usage file, tokenizer, weights directory)
//! must resolve — symlinks followed — inside one of `asset_roots` (default: the config file's
//! directory; weights from the Hugging Face cache may also lie in that cache), and never inside the
//! data directory or at the config file itself. A path that breaks the rule is refused with the key
//! and the rule ([`MeasureError::OutsideRoots`], [`MeasureError::Forbidden`]).
use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use alloy::primitives::B256;
use sealtune_protocol::attestation::{
    CONFIG_VERSION, ConfigDocument, FileDigest, MeasuredLimits, MeasuredModel, TreeEntry, Wall,
    WeightsDigest, tree_digest,
};
use sha2::{Digest as _, Sha256};

use crate::config::Config;
use crate::models::{ModelConfig, Weights, hf_snapshot};

/// Directory (in the data directory) holding the measured copies.
pub const MEASURED_DIR: &str = "measured";

/// Why the configuration cannot be measured.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    /// A path resolves outside every asset root.
    #[error(
        "config key `{key}`: {path} resolves to {resolved}, outside the asset roots ({roots}): scripts, usage files, tokenizers and weights must lie under `asset_roots`, with no symlink leading out"
    )]
    OutsideRoots {
        /// The config key.
        key: String,
        /// The path as configured.
        path: PathBuf,
        /// Where it resolves.
        resolved: PathBuf,
        /// The roots, comma-separated.
        roots: String,
    },
    /// A path resolves into the data directory or at the config file.
    #[error(
        "config key `{key}`: {path} resolves into {what}, which the worker never serves or runs"
    )]
    Forbidden {
        /// The config key.
        key: String,
        /// The path as configured.
        path: PathBuf,
        /// `the data directory` or `the config file`.
        what: &'static str,
    },
    /// A path cannot be read (missing, wrong kind, unreadable).
    #[error("config key `{key}`: {path}: {reason}")]
    Unreadable {
        /// The config key.
        key: String,
        /// The path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Writing the measured copy failed.
    #[error("cannot keep a measured copy in {path}: {source}")]
    Keep {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl MeasureError {
    /// The configured path the error is about.
    pub fn path(&self) -> Option<&Path> {
        match self {
            MeasureError::OutsideRoots { path, .. }
            | MeasureError::Forbidden { path, .. }
            | MeasureError::Unreadable { path, .. } => Some(path),
            MeasureError::Keep { .. } => None,
        }
    }
}

/// Whether measuring keeps copies (serve) or only hashes (config check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Hash only: nothing is written, the config is not rewritten.
    Check,
    /// Hash, copy into `<data_dir>/measured/`, and rewrite the config to the copies.
    Keep,
}

/// The measured configuration.
#[derive(Debug, Clone)]
pub struct Measured {
    /// The canonical document.
    pub document: ConfigDocument,
    /// Its hash.
    pub hash: B256,
}

impl Measured {
    /// The same measurement with the sandbox's walls recorded (the walls are detected once the
    /// configuration points at the measured copies the task uid must read); the hash follows.
    pub fn with_walls(mut self, walls: Vec<Wall>) -> Measured {
        self.document.sandbox = walls;
        self.hash = self.document.hash();
        self
    }
}

/// Where assets may come from and where they may not.
struct Rules {
    roots: Vec<PathBuf>,
    hf_root: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    config_file: Option<PathBuf>,
}

impl Rules {
    fn new(config: &Config, config_file: &Path) -> Rules {
        let canon = |p: &Path| std::fs::canonicalize(p).ok();
        // Canonical first: the parent of a bare `worker.toml` is the empty path.
        let config_file = canon(config_file).unwrap_or_else(|| config_file.to_owned());
        let roots = if config.asset_roots.is_empty() {
            config_file.parent().and_then(canon).into_iter().collect()
        } else {
            config.asset_roots.iter().filter_map(|p| canon(p)).collect()
        };
        Rules {
            roots,
            hf_root: hf_cache_root().as_deref().and_then(canon),
            data_dir: canon(&config.data_dir),
            config_file: Some(config_file),
        }
    }

    /// Resolves `path` and applies the rule; `hf` allows the Hugging Face cache as a root.
    fn resolve(&self, key: &str, path: &Path, hf: bool) -> Result<PathBuf, MeasureError> {
        let resolved = std::fs::canonicalize(path).map_err(|e| MeasureError::Unreadable {
            key: key.to_owned(),
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        self.check_resolved(key, path, &resolved, hf)?;
        Ok(resolved)
    }

    fn check_resolved(
        &self,
        key: &str,
        path: &Path,
        resolved: &Path,
        hf: bool,
    ) -> Result<(), MeasureError> {
        let forbidden = |what| MeasureError::Forbidden {
            key: key.to_owned(),
            path: path.to_owned(),
            what,
        };
        if self
            .data_dir
            .as_deref()
            .is_some_and(|d| resolved.starts_with(d))
        {
            return Err(forbidden("the data directory"));
        }
        if self.config_file.as_deref() == Some(resolved) {
            return Err(forbidden("the config file"));
        }
        let inside = self.roots.iter().any(|r| resolved.starts_with(r))
            || (hf
                && self
                    .hf_root
                    .as_deref()
                    .is_some_and(|r| resolved.starts_with(r)));
        if inside {
            return Ok(());
        }
        Err(MeasureError::OutsideRoots {
            key: key.to_owned(),
            path: path.to_owned(),
            resolved: resolved.to_owned(),
            roots: self
                .roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

/// The Hugging Face cache directory weights `{ hf = … }` are read from.
fn hf_cache_root() -> Option<PathBuf> {
    match std::env::var_os("HF_HUB_CACHE") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => Some(hf_hub::Cache::from_env().path().clone()),
    }
}

/// Measures `config` (read from `config_file`): applies the asset rule to every path, hashes every
/// asset, and in [`Mode::Keep`] copies each into `<data_dir>/measured/` and rewrites `config` to
/// point at the copies. `walls` is the sandbox's list, in its fixed order.
pub fn measure(
    config: &mut Config,
    config_file: &Path,
    mode: Mode,
    walls: Vec<Wall>,
) -> Result<Measured, MeasureError> {
    let rules = Rules::new(config, config_file);
    let keep = match mode {
        Mode::Check => None,
        Mode::Keep => Some(prepare_store(&config.data_dir)?),
    };
    let mut models = Vec::with_capacity(config.service.models.len());
    for (i, model) in config.service.models.iter_mut().enumerate() {
        let key = format!("service.models[{i}]");
        models.push(measure_model(model, &key, &rules, keep.as_deref())?);
    }
    let document = ConfigDocument {
        version: CONFIG_VERSION,
        attestation_source: config.attestation.source.as_str().to_owned(),
        serving: config.chain.serving.unwrap_or_default(),
        ledger: config.chain.ledger.unwrap_or_default(),
        price_per_token: config.service.price_per_token,
        limits: limits_of(config),
        models,
        sandbox: walls,
        tls: config.tls_listen.is_some(),
    };
    let hash = document.hash();
    Ok(Measured { document, hash })
}

fn limits_of(config: &Config) -> MeasuredLimits {
    let l = &config.limits;
    MeasuredLimits {
        queue_size: l.queue_size,
        training_timeout_secs: l.training_timeout.0.as_secs(),
        executor_memory_bytes: l.executor_memory_bytes,
        max_upload_bytes: l.max_upload_bytes,
        ack_timeout_secs: l.ack_timeout.0.as_secs(),
        retention_secs: l.retention.0.as_secs(),
        training_restarts: l.training_restarts,
        setup_timeout_secs: l.setup_timeout.0.as_secs(),
        min_deposit: l.min_deposit,
        max_dataset_unpacked_bytes: l.max_dataset_unpacked_bytes(),
        max_dataset_entries: l.max_dataset_entries(),
    }
}

/// Creates `<data_dir>/measured` (0755: the training sandbox's uid reads the copies).
fn prepare_store(data_dir: &Path) -> Result<PathBuf, MeasureError> {
    let dir = data_dir.join(MEASURED_DIR);
    let keep_err = |source| MeasureError::Keep {
        path: dir.clone(),
        source,
    };
    std::fs::create_dir_all(dir.join("files")).map_err(keep_err)?;
    std::fs::create_dir_all(dir.join("trees")).map_err(keep_err)?;
    for d in [dir.clone(), dir.join("files"), dir.join("trees")] {
        set_mode(&d, 0o755)?;
    }
    Ok(dir)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), MeasureError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|source| {
        MeasureError::Keep {
            path: path.to_owned(),
            source,
        }
    })
}

fn measure_model(
    model: &mut ModelConfig,
    key: &str,
    rules: &Rules,
    keep: Option<&Path>,
) -> Result<MeasuredModel, MeasureError> {
    let (script, script_copy) = measure_file(
        &format!("{key}.training_script"),
        &model.training_script,
        rules,
        keep,
    )?;
    let evaluation = match &model.evaluation_script {
        Some(p) => Some(measure_file(
            &format!("{key}.evaluation_script"),
            p,
            rules,
            keep,
        )?),
        None => None,
    };
    let usage = match &model.usage_file {
        Some(p) => Some(measure_file(&format!("{key}.usage_file"), p, rules, keep)?),
        None => None,
    };
    let (weights, weights_copy, weights_source) = measure_weights(model, key, rules, keep)?;
    let tokenizer_dir = weights_copy.as_ref().or(weights_source.as_ref());
    let tokenizer = match (&model.tokenizer_path, tokenizer_dir) {
        (Some(p), _) => Some(measure_file(
            &format!("{key}.tokenizer_path"),
            p,
            rules,
            keep,
        )?),
        (None, Some(dir)) => tokenizer_in(dir)?,
        (None, None) => None,
    };
    let measured = MeasuredModel {
        name: model.name.clone(),
        hash: model.hash,
        data_type: model.data_type.as_str().to_owned(),
        params: match model.params {
            crate::models::ParamsSchema::Lora => "lora".into(),
            crate::models::ParamsSchema::Free => "free".into(),
        },
        script,
        tokenizer: tokenizer.as_ref().map(|t| t.0),
        usage: usage.as_ref().map(|u| u.0),
        weights,
        price_coefficient: model.price_coefficient.to_string(),
        storage_fee: model.storage_fee,
        ranks: model.ranks,
        evaluation_script: evaluation.as_ref().map(|e| e.0),
        lora_ranges: model.lora_ranges.clone(),
        checkpoint_steps: model.checkpoint_steps,
    };
    if keep.is_some() {
        if let Some(p) = script_copy {
            model.training_script = p;
        }
        if let Some((_, Some(p))) = evaluation {
            model.evaluation_script = Some(p);
        }
        if let Some((_, Some(p))) = usage {
            model.usage_file = Some(p);
        }
        if let Some(dir) = weights_copy {
            model.weights = Some(Weights::Path(dir));
        }
        if model.tokenizer_path.is_some()
            && let Some((_, Some(p))) = tokenizer
        {
            model.tokenizer_path = Some(p);
        }
    }
    Ok(measured)
}

/// The tokenizer inside an already measured weights directory (hashed from the copy's bytes).
fn tokenizer_in(dir: &Path) -> Result<Option<(FileDigest, Option<PathBuf>)>, MeasureError> {
    let path = dir.join("tokenizer.json");
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some((FileDigest::of(&bytes), None))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(MeasureError::Unreadable {
            key: "tokenizer.json".into(),
            path,
            reason: e.to_string(),
        }),
    }
}

/// Hashes one file (after the rule) and, when keeping, copies it to
/// `measured/files/<sha256>/<file name>` (the name kept: scripts see their own name).
fn measure_file(
    key: &str,
    path: &Path,
    rules: &Rules,
    keep: Option<&Path>,
) -> Result<(FileDigest, Option<PathBuf>), MeasureError> {
    let resolved = rules.resolve(key, path, false)?;
    let unreadable = |reason: String| MeasureError::Unreadable {
        key: key.to_owned(),
        path: path.to_owned(),
        reason,
    };
    if !resolved.is_file() {
        return Err(unreadable("not a regular file".into()));
    }
    let bytes = std::fs::read(&resolved).map_err(|e| unreadable(e.to_string()))?;
    let digest = FileDigest::of(&bytes);
    let Some(store) = keep else {
        return Ok((digest, None));
    };
    let name = resolved
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_owned());
    let dir = store.join("files").join(hex::encode(digest.sha256));
    let target = dir.join(name);
    if !same_file_content(&target, &digest) {
        write_copy(&dir, &target, &bytes)?;
    }
    Ok((digest, Some(target)))
}

fn same_file_content(path: &Path, digest: &FileDigest) -> bool {
    std::fs::read(path).is_ok_and(|b| FileDigest::of(&b) == *digest)
}

/// Writes `bytes` to `target` (in `dir`, 0755) through a synced temporary file, mode 0644.
fn write_copy(dir: &Path, target: &Path, bytes: &[u8]) -> Result<(), MeasureError> {
    let keep_err = |path: &Path| {
        let path = path.to_owned();
        move |source| MeasureError::Keep { path, source }
    };
    std::fs::create_dir_all(dir).map_err(keep_err(dir))?;
    set_mode(dir, 0o755)?;
    let tmp = target.with_extension("measuring");
    let mut f = std::fs::File::create(&tmp).map_err(keep_err(&tmp))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(keep_err(&tmp))?;
    set_mode(&tmp, 0o644)?;
    std::fs::rename(&tmp, target).map_err(keep_err(target))
}

/// The weights' digest, their kept copy (when keeping) and their resolved source directory.
type MeasuredWeights = (WeightsDigest, Option<PathBuf>, Option<PathBuf>);

/// Weights: a directory (path or HF cache) is hashed file by file and, when keeping, copied to
/// `measured/trees/<tree digest>/`; weights by root hash are already content-addressed.
fn measure_weights(
    model: &ModelConfig,
    key: &str,
    rules: &Rules,
    keep: Option<&Path>,
) -> Result<MeasuredWeights, MeasureError> {
    let key = format!("{key}.weights");
    let (dir, hf) = match &model.weights {
        Some(Weights::Root(root)) => return Ok((WeightsDigest::Root(*root), None, None)),
        Some(Weights::Path(p)) => (p.clone(), false),
        Some(Weights::Hf(repo)) => (
            hf_snapshot(repo).map_err(|e| MeasureError::Unreadable {
                key: key.clone(),
                path: PathBuf::from(repo),
                reason: e.to_string(),
            })?,
            true,
        ),
        None => {
            return Err(MeasureError::Unreadable {
                key,
                path: PathBuf::new(),
                reason: "no weights configured (path, hf or root)".into(),
            });
        }
    };
    let resolved = rules.resolve(&key, &dir, hf)?;
    // Hash first: a tree already kept under that digest (a restart) is not copied again.
    let digest = hash_tree(&resolved, &key, rules, hf, None)?;
    let Some(store) = keep else {
        return Ok((WeightsDigest::Tree(digest), None, Some(resolved)));
    };
    let kept = store.join("trees").join(hex::encode(digest));
    if kept.is_dir() {
        return Ok((WeightsDigest::Tree(digest), Some(kept), Some(resolved)));
    }
    // Copy, hashing what is written: the digest recorded is the kept bytes' (if the source changed
    // since the first pass, the copy's digest wins).
    let staging = staging_dir(store)?;
    let digest = match hash_tree(&resolved, &key, rules, hf, Some(&staging)) {
        Ok(d) => d,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    let target = store.join("trees").join(hex::encode(digest));
    if target.is_dir() {
        let _ = std::fs::remove_dir_all(&staging);
    } else {
        std::fs::rename(&staging, &target).map_err(|source| MeasureError::Keep {
            path: target.clone(),
            source,
        })?;
    }
    Ok((WeightsDigest::Tree(digest), Some(target), Some(resolved)))
}

/// The tree digest of `root` (copied under `copy_to` when given).
fn hash_tree(
    root: &Path,
    key: &str,
    rules: &Rules,
    hf: bool,
    copy_to: Option<&Path>,
) -> Result<B256, MeasureError> {
    let mut entries = Vec::new();
    walk(root, root, key, rules, hf, copy_to, &mut entries)?;
    Ok(tree_digest(&mut entries))
}

fn staging_dir(store: &Path) -> Result<PathBuf, MeasureError> {
    let dir = store
        .join("trees")
        .join(format!(".staging-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).map_err(|source| MeasureError::Keep {
        path: dir.clone(),
        source,
    })?;
    set_mode(&dir, 0o755)?;
    Ok(dir)
}

/// Walks `dir` (under the tree `root`), hashing every file (and copying it under `copy_to`).
fn walk(
    root: &Path,
    dir: &Path,
    key: &str,
    rules: &Rules,
    hf: bool,
    copy_to: Option<&Path>,
    entries: &mut Vec<TreeEntry>,
) -> Result<(), MeasureError> {
    let unreadable = |path: &Path, e: std::io::Error| MeasureError::Unreadable {
        key: key.to_owned(),
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let mut list: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| unreadable(dir, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| unreadable(dir, e))?;
    list.sort_by_key(|e| e.file_name());
    for entry in list {
        let path = entry.path();
        let resolved = rules.resolve(key, &path, hf)?;
        let rel = path.strip_prefix(root).unwrap_or(&path);
        let rel_text = rel.to_string_lossy().into_owned();
        let dest = copy_to.map(|c| c.join(rel));
        if resolved.is_dir() {
            if let Some(d) = &dest {
                std::fs::create_dir_all(d).map_err(|e| unreadable(d, e))?;
                set_mode(d, 0o755)?;
            }
            walk(root, &path, key, rules, hf, copy_to, entries)?;
        } else {
            let digest =
                hash_and_copy(&resolved, dest.as_deref()).map_err(|e| unreadable(&path, e))?;
            entries.push(TreeEntry {
                path: rel_text,
                digest,
            });
        }
    }
    Ok(())
}

/// Streams `src` through SHA-256 and, when `dest` is given, into `dest` (synced, 0644): the bytes
/// hashed are the bytes kept.
fn hash_and_copy(src: &Path, dest: Option<&Path>) -> std::io::Result<FileDigest> {
    let mut input = std::fs::File::open(src)?;
    let mut out = match dest {
        Some(d) => Some(std::fs::File::create(d)?),
        None => None,
    };
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = input.read(&mut buf)?;
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
            break;
        };
        hasher.update(chunk);
        len += n as u64;
        if let Some(o) = out.as_mut() {
            o.write_all(chunk)?;
        }
    }
    if let (Some(o), Some(d)) = (out, dest) {
        o.sync_all()?;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(FileDigest {
        sha256: B256::from(<[u8; 32]>::from(hasher.finalize())),
        len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> Config {
        let text = format!(
            r#"
data_dir = "{data}"
[[service.models]]
name = "m"
hash = "0x1d98b2088bd094f879315ac29edd471638204cd45e7c8d066ee88fbc7c174ce7"
training_script = "{dir}/train.py"
usage_file = "{dir}/usage.zip"
weights = {{ path = "{dir}/weights" }}
[attestation]
source = "dev"
"#,
            data = dir.join("data").display(),
            dir = dir.display()
        );
        Config::from_toml(&text).unwrap()
    }

    /// What is kept is what was hashed: swapping the originals after the start changes nothing the
    /// worker uses, and a restart over the same bytes reuses the kept copies under the same hash.
    #[test]
    fn kept_copies_are_used_and_a_later_swap_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("train.py"), "print('v1')\n").unwrap();
        std::fs::write(d.join("usage.zip"), "usage v1").unwrap();
        std::fs::create_dir_all(d.join("weights/sub")).unwrap();
        std::fs::write(d.join("weights/tokenizer.json"), "{}").unwrap();
        std::fs::write(d.join("weights/sub/w.bin"), [1u8; 100]).unwrap();
        std::fs::create_dir_all(d.join("data")).unwrap();
        let file = d.join("worker.toml");
        std::fs::write(&file, "").unwrap();

        let mut checked = config(d);
        let check = measure(&mut checked, &file, Mode::Check, Vec::new()).unwrap();
        assert_eq!(
            checked.service.models[0].training_script,
            d.join("train.py"),
            "check mode rewrites nothing"
        );
        let mut kept = config(d);
        let first = measure(&mut kept, &file, Mode::Keep, Vec::new()).unwrap();
        assert_eq!(first.hash, check.hash);
        let m = &kept.service.models[0];
        assert!(m.training_script.starts_with(d.join("data/measured/files")));
        std::fs::write(d.join("train.py"), "import os; os.system('steal')\n").unwrap();
        std::fs::write(d.join("weights/sub/w.bin"), [2u8; 100]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&m.training_script).unwrap(),
            "print('v1')\n"
        );
        let Some(Weights::Path(w)) = &m.weights else {
            panic!("weights not rewritten: {:?}", m.weights)
        };
        assert_eq!(std::fs::read(w.join("sub/w.bin")).unwrap(), [1u8; 100]);
        assert_eq!(
            std::fs::metadata(&m.training_script)
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o644
        );

        // The swapped bytes are another config; the original bytes again are the first one.
        let mut swapped = config(d);
        let second = measure(&mut swapped, &file, Mode::Keep, Vec::new()).unwrap();
        assert_ne!(second.hash, first.hash);
        std::fs::write(d.join("train.py"), "print('v1')\n").unwrap();
        std::fs::write(d.join("weights/sub/w.bin"), [1u8; 100]).unwrap();
        let mut again = config(d);
        let third = measure(&mut again, &file, Mode::Keep, Vec::new()).unwrap();
        assert_eq!(third.hash, first.hash);
        assert_eq!(
            again.service.models[0].weights,
            kept.service.models[0].weights
        );
    }
}
