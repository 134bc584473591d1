//! `sealtune-worker config import-0g`: a 0G provider config (the 0G serving broker's
//! `config.local.yaml`: `servingUrl`, `privateKeys`, `service.customizedModels` …) converted into
//! sealtune's TOML ([`crate::config`]), with a note for every key saying what happened to it and
//! why: carried over, converted, left out (and why sealtune cannot use it), or still needed.
//!
//! The YAML is the provider's own file but may hold secrets: no value of a key that is not carried
//! over is ever repeated (not in the TOML, not in the notes), and the wallet keys are never written
//! into the TOML (a production start refuses a readable config file holding a key; the key belongs
//! in dstack's encrypted environment as `SEALTUNE_PRIVATE_KEY`). The TOML is parsed back with
//! [`Config::from_toml`] before it is returned, so what is written is what the worker reads.
use std::path::PathBuf;

use alloy::primitives::{Address, B256};
use serde::Serialize;
use yaml_rust2::{Yaml, YamlLoader};

use crate::config::Config;

/// Where the stock training scripts are in the worker image (the default `--scripts-dir`).
pub const DEFAULT_SCRIPTS_DIR: &str = "/opt/sealtune/scripts/training";

/// What the import cannot learn from a 0G config.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The directory of the stock scripts (`lora_causal_lm.py`, `image_classification.py`).
    pub scripts_dir: PathBuf,
    /// The chain's JSON-RPC URL.
    pub rpc: Option<String>,
    /// The FineTuningServing contract.
    pub serving: Option<Address>,
    /// The LedgerManager contract.
    pub ledger: Option<Address>,
    /// A 0G Storage indexer (models named by their 0G root are fetched through it).
    pub storage_indexer: Option<String>,
    /// The attestation source (`dstack` in a CVM).
    pub attestation: String,
}

/// What happened to a key of the 0G config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Written unchanged under sealtune's name.
    Carried,
    /// Written in another form (the note says which).
    Converted,
    /// Not written (the note says why).
    Dropped,
    /// sealtune needs it and the 0G config does not say: set it before serving.
    Needed,
}

/// One note of the import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Note {
    /// The key (dotted, `service.customizedModels[0].trainingScript`), or sealtune's key for
    /// [`Outcome::Needed`].
    pub key: String,
    /// What happened.
    pub outcome: Outcome,
    /// Why, and what to do.
    pub why: String,
}

/// The converted config and its notes.
#[derive(Debug, Clone, Serialize)]
pub struct Imported {
    /// sealtune's TOML.
    pub toml: String,
    /// One note per key.
    pub notes: Vec<Note>,
}

/// Why a 0G config cannot be imported at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Not YAML.
    #[error("not a YAML file: {0}")]
    Yaml(String),
    /// YAML, but not a 0G provider config (no mapping at the top).
    #[error("not a 0G provider config: {0}")]
    Shape(String),
    /// The TOML written does not load (a bug of the import).
    #[error("the converted config does not load: {0}")]
    Output(String),
}

/// Notes and TOML under construction.
struct Import {
    notes: Vec<Note>,
    top: toml::Table,
}

impl Import {
    fn note(&mut self, key: impl Into<String>, outcome: Outcome, why: impl Into<String>) {
        self.notes.push(Note {
            key: key.into(),
            outcome,
            why: why.into(),
        });
    }
}

/// Converts the 0G provider config `yaml` (the text of `config.local.yaml`).
pub fn import_0g(yaml: &str, opts: &ImportOptions) -> Result<Imported, ImportError> {
    let docs = YamlLoader::load_from_str(yaml).map_err(|e| ImportError::Yaml(e.to_string()))?;
    let Some(Yaml::Hash(root)) = docs.into_iter().next() else {
        return Err(ImportError::Shape(
            "the file's top level is not a mapping of keys".into(),
        ));
    };
    let mut im = Import {
        notes: Vec::new(),
        top: toml::Table::new(),
    };
    let mut models = Vec::new();
    for (k, v) in &root {
        let key = key_text(k);
        match key.as_str() {
            "servingUrl" => serving_url(&mut im, v),
            "privateKeys" => private_keys(&mut im, v),
            "service" => service(&mut im, v, opts, &mut models),
            _ => im.note(key, Outcome::Dropped, unknown_why(v)),
        }
    }
    fill_in(&mut im, opts, !models.is_empty());
    if !models.is_empty() {
        let mut service = toml::Table::new();
        service.insert("models".into(), toml::Value::Array(models));
        im.top.insert("service".into(), toml::Value::Table(service));
    }
    let toml = render(&im.top, &im.notes);
    Config::from_toml(&toml).map_err(ImportError::Output)?;
    Ok(Imported {
        toml,
        notes: im.notes,
    })
}

fn key_text(k: &Yaml) -> String {
    match k {
        Yaml::String(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        other => format!("{other:?}"),
    }
}

/// Why an unknown key is left out; its value is never repeated (it may be a secret).
fn unknown_why(v: &Yaml) -> String {
    let what = match v {
        Yaml::Hash(h) => format!("a section of {} keys", h.len()),
        Yaml::Array(a) => format!("a list of {} entries", a.len()),
        _ => "a value".to_owned(),
    };
    format!(
        "{what} sealtune has no setting for (the broker's own database, logging and intervals have no counterpart: sealtune keeps its state in SQLite under data_dir); its value is not repeated here"
    )
}

fn serving_url(im: &mut Import, v: &Yaml) {
    match v.as_str().filter(|s| !s.trim().is_empty()) {
        Some(url) => {
            im.top
                .insert("serving_url".into(), toml::Value::String(url.to_owned()));
            im.note(
                "servingUrl",
                Outcome::Carried,
                "serving_url: the public URL registered on chain",
            );
        }
        None => im.note(
            "servingUrl",
            Outcome::Dropped,
            "not a non-empty string; set serving_url (or SEALTUNE_SERVING_URL)",
        ),
    }
}

fn private_keys(im: &mut Import, v: &Yaml) {
    let n = v.as_vec().map_or(1, Vec::len);
    let extra = if n > 1 {
        format!(
            "; sealtune uses one wallet, the other {} key(s) have no use",
            n - 1
        )
    } else {
        String::new()
    };
    im.note(
        "privateKeys",
        Outcome::Dropped,
        format!(
            "a secret is not written into the config file (a production start refuses a readable file holding a key): set SEALTUNE_PRIVATE_KEY to the first key in dstack's encrypted environment{extra}"
        ),
    );
}

fn service(im: &mut Import, v: &Yaml, opts: &ImportOptions, models: &mut Vec<toml::Value>) {
    let Yaml::Hash(h) = v else {
        im.note("service", Outcome::Dropped, "not a mapping");
        return;
    };
    for (k, v) in h {
        let key = format!("service.{}", key_text(k));
        match key_text(k).as_str() {
            "customizedModels" => match v.as_vec() {
                Some(list) => {
                    for (i, m) in list.iter().enumerate() {
                        if let Some(t) = model(im, &format!("{key}[{i}]"), m, opts) {
                            models.push(toml::Value::Table(t));
                        }
                    }
                }
                None => im.note(key, Outcome::Dropped, "not a list of models"),
            },
            _ => im.note(key, Outcome::Dropped, unknown_why(v)),
        }
    }
}

/// One `customizedModels` entry as a `[[service.models]]` table, or `None` (noted) when it lacks
/// what sealtune needs.
fn model(im: &mut Import, key: &str, m: &Yaml, opts: &ImportOptions) -> Option<toml::Table> {
    let Yaml::Hash(h) = m else {
        im.note(key, Outcome::Dropped, "not a mapping");
        return None;
    };
    let field = |name: &str| h.get(&Yaml::String(name.into())).and_then(Yaml::as_str);
    let (Some(name), Some(hash)) = (field("name"), field("hash")) else {
        im.note(key, Outcome::Dropped, "a model needs `name` and `hash`");
        return None;
    };
    let Ok(hash) = hash.parse::<B256>() else {
        im.note(
            format!("{key}.hash"),
            Outcome::Dropped,
            format!(
                "model `{name}`: not a 32-byte 0x hash (a placeholder?): the model is left out"
            ),
        );
        return None;
    };
    let data_type = field("dataType").unwrap_or("text");
    let script = match crate::models::DataType::from_name(data_type) {
        Some(crate::models::DataType::Text) => "lora_causal_lm.py",
        Some(crate::models::DataType::Image) => "image_classification.py",
        None => {
            im.note(
                format!("{key}.dataType"),
                Outcome::Dropped,
                format!(
                    "model `{name}`: `{data_type}` is neither text nor image: the model is left out"
                ),
            );
            return None;
        }
    };
    let mut t = toml::Table::new();
    let s = |v: &str| toml::Value::String(v.to_owned());
    t.insert("name".into(), s(name));
    t.insert("hash".into(), s(&hash.to_string()));
    t.insert("data_type".into(), s(data_type));
    let script_path = opts.scripts_dir.join(script);
    t.insert(
        "training_script".into(),
        s(&script_path.display().to_string()),
    );
    if script == "image_classification.py" {
        // The stock image script validates its own parameters (not the LoRA script's five).
        t.insert("params".into(), s("free"));
    }
    let mut weights = toml::Table::new();
    weights.insert("root".into(), s(&hash.to_string()));
    t.insert("weights".into(), toml::Value::Table(weights));
    for (k, _) in h {
        let k = key_text(k);
        let at = format!("{key}.{k}");
        match k.as_str() {
            "name" | "dataType" => im.note(at, Outcome::Carried, "unchanged"),
            "hash" => im.note(
                at,
                Outcome::Converted,
                "`hash` (what customers send as preTrainedModelHash) and `weights = { root = … }`: the 0G Storage root of the model, fetched from there at its first task (a zip of the model directory; needs [storage.zg])",
            ),
            "image" | "description" | "tokenizer" => {
                if let Some(v) = field(&k) {
                    t.insert(k.clone(), s(v));
                }
                let why = match k.as_str() {
                    "image" => "shown to customers only: sealtune runs no per-model image, scripts run in the worker's embedded Python",
                    "tokenizer" => "shown to customers only: the fee is counted with the tokenizer.json of the weights (set tokenizer_path to use another)",
                    _ => "unchanged",
                };
                im.note(at, Outcome::Carried, why);
            }
            "trainingScript" => im.note(
                at,
                Outcome::Converted,
                format!(
                    "a path inside the 0G execution image, which sealtune cannot read: training_script is the stock {data_type} script {}; to keep yours, copy it out of the image (docker cp) into an asset root and point training_script at it",
                    script_path.display()
                ),
            ),
            _ => im.note(at, Outcome::Dropped, "no such model setting in sealtune"),
        }
    }
    Some(t)
}

/// What the 0G config does not say: the chain, the attestation source, the asset roots, storage.
fn fill_in(im: &mut Import, opts: &ImportOptions, root_weights: bool) {
    let mut chain = toml::Table::new();
    if let Some(rpc) = &opts.rpc {
        chain.insert("rpc".into(), toml::Value::String(rpc.clone()));
    }
    for (name, addr, env) in [
        ("serving", opts.serving, "SEALTUNE_SERVING"),
        ("ledger", opts.ledger, "SEALTUNE_LEDGER"),
    ] {
        match addr {
            Some(a) => {
                chain.insert(name.into(), toml::Value::String(a.to_string()));
            }
            None => im.note(
                format!("chain.{name}"),
                Outcome::Needed,
                format!("the contract address: pass --{name} or set {env}"),
            ),
        }
    }
    if !chain.is_empty() {
        im.top.insert("chain".into(), toml::Value::Table(chain));
    }
    im.note(
        "private_key",
        Outcome::Needed,
        "the provider wallet: SEALTUNE_PRIVATE_KEY in dstack's encrypted environment",
    );
    let mut attestation = toml::Table::new();
    attestation.insert(
        "source".into(),
        toml::Value::String(opts.attestation.clone()),
    );
    im.top
        .insert("attestation".into(), toml::Value::Table(attestation));
    im.top.insert(
        "asset_roots".into(),
        toml::Value::Array(vec![toml::Value::String(
            opts.scripts_dir.display().to_string(),
        )]),
    );
    if !root_weights {
        return;
    }
    match &opts.storage_indexer {
        Some(indexer) => {
            let mut zg = toml::Table::new();
            zg.insert("indexer".into(), toml::Value::String(indexer.clone()));
            let mut storage = toml::Table::new();
            storage.insert("zg".into(), toml::Value::Table(zg));
            im.top.insert("storage".into(), toml::Value::Table(storage));
        }
        None => im.note(
            "storage.zg",
            Outcome::Needed,
            "the models' weights are 0G Storage roots: add [storage.zg] with `indexer` or `nodes` (--storage-indexer), or point each model's weights at a local directory",
        ),
    }
}

/// The TOML text: the notes as comments, then the table.
fn render(top: &toml::Table, notes: &[Note]) -> String {
    let mut out = String::from(
        "# Converted from a 0G provider config by `sealtune-worker config import-0g`.\n# Check it with `sealtune-worker config check --config <this file>`.\n#\n",
    );
    for n in notes {
        let outcome = match n.outcome {
            Outcome::Carried => "carried",
            Outcome::Converted => "converted",
            Outcome::Dropped => "left out",
            Outcome::Needed => "NEEDED",
        };
        out.push_str(&format!("# {}: {outcome}: {}\n", n.key, n.why));
    }
    out.push('\n');
    out.push_str(&toml::to_string(top).unwrap_or_default());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> ImportOptions {
        ImportOptions {
            scripts_dir: PathBuf::from("/opt/s"),
            rpc: None,
            serving: None,
            ledger: None,
            storage_indexer: None,
            attestation: "dstack".into(),
        }
    }

    fn outcome(notes: &[Note], key: &str) -> Option<Outcome> {
        notes.iter().find(|n| n.key == key).map(|n| n.outcome)
    }

    #[test]
    fn no_secret_or_unknown_value_is_repeated() {
        let yaml = "servingUrl: \"http://x:3080\"\nprivateKeys:\n  - \"0xaaaabbbbccccddddeeeeffff0000111122223333444455556666777788889999\"\ndatabase:\n  fineTune: \"root:hunter2@tcp(db)/ft\"\n";
        let out = import_0g(yaml, &opts()).unwrap();
        let json = serde_json::to_string(&out).unwrap();
        assert!(
            !json.contains("aaaabbbb") && !json.contains("hunter2"),
            "{json}"
        );
        assert_eq!(outcome(&out.notes, "privateKeys"), Some(Outcome::Dropped));
        assert_eq!(outcome(&out.notes, "database"), Some(Outcome::Dropped));
        assert_eq!(outcome(&out.notes, "private_key"), Some(Outcome::Needed));
        let cfg = Config::from_toml(&out.toml).unwrap();
        assert_eq!(cfg.serving_url, "http://x:3080");
        assert!(cfg.private_key.is_none() && cfg.private_keys.is_empty());
    }

    #[test]
    fn a_placeholder_hash_or_unknown_data_type_leaves_the_model_out() {
        let yaml = "service:\n  customizedModels:\n    - name: a\n      hash: \"<MODEL_ROOT_HASH>\"\n    - name: b\n      hash: \"0x0101010101010101010101010101010101010101010101010101010101010101\"\n      dataType: audio\n";
        let out = import_0g(yaml, &opts()).unwrap();
        assert_eq!(
            outcome(&out.notes, "service.customizedModels[0].hash"),
            Some(Outcome::Dropped)
        );
        assert_eq!(
            outcome(&out.notes, "service.customizedModels[1].dataType"),
            Some(Outcome::Dropped)
        );
        assert!(
            Config::from_toml(&out.toml)
                .unwrap()
                .service
                .models
                .is_empty()
        );
    }

    #[test]
    fn not_a_mapping_is_refused() {
        assert!(matches!(
            import_0g("- a\n- b\n", &opts()),
            Err(ImportError::Shape(_))
        ));
        assert!(matches!(
            import_0g("a: [\n", &opts()),
            Err(ImportError::Yaml(_))
        ));
    }
}
