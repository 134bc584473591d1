//! The image spec (`deploy/image.toml`): the runtime configuration of the image, its layers in order,
//! and the variants (`cpu`, `cuda`) that differ only in their environment.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::ImageError;

/// The image spec, as read from TOML (unknown keys are refused).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// The image name (`sealtune-worker`); the reference in `index.json` is `<version>-<variant>`.
    pub name: String,
    /// The version part of the reference.
    pub version: String,
    /// Where the release publishes the image: the compose pins `<repository>@<manifest digest>`.
    pub repository: String,
    /// Unix seconds: every file's mtime and the config's `created` (SOURCE_DATE_EPOCH of the build).
    pub created: i64,
    /// The OCI architecture (`amd64`).
    pub architecture: String,
    /// The OCI OS (`linux`).
    pub os: String,
    /// The container's runtime configuration.
    pub config: RuntimeConfig,
    /// The layers, bottom first; `build` is given a directory for each, by name.
    #[serde(rename = "layer")]
    pub layers: Vec<LayerSpec>,
    /// Per variant, what it adds to the configuration.
    #[serde(default)]
    pub variants: BTreeMap<String, Variant>,
}

/// The runtime configuration of the image (OCI image config `config`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    #[serde(default)]
    pub cmd: Vec<String>,
    /// `Env`, `KEY=value` each.
    #[serde(default)]
    pub env: Vec<String>,
    /// `WorkingDir`.
    #[serde(default = "root_dir")]
    pub working_dir: String,
    /// `ExposedPorts` (`3080/tcp`).
    #[serde(default)]
    pub exposed_ports: Vec<String>,
    /// `Volumes`.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// `Labels`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn root_dir() -> String {
    "/".to_owned()
}

/// One layer of the image.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerSpec {
    /// The name `build` is given its directory under (`--layer <name>=<dir>`).
    pub name: String,
    /// What it holds (the history entry's `created_by`).
    pub comment: String,
    /// `true`: every entry root's with mode `0755` (directories and executables) or `0644`, whatever the
    /// build machine's umask or user; `false`: the numeric ids and mode bits of the directory are kept
    /// (a Debian root file system, whose packages set them).
    #[serde(default = "yes")]
    pub normalize: bool,
}

fn yes() -> bool {
    true
}

/// What a variant adds to the configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// Appended to `config.env`.
    #[serde(default)]
    pub env: Vec<String>,
}

impl ImageSpec {
    /// Parse and check a spec: layer names unique, the epoch and the variants sane.
    pub fn from_toml(text: &str) -> Result<Self, ImageError> {
        let spec: Self = toml::from_str(text).map_err(|e| ImageError::Spec(e.to_string()))?;
        if spec.created < 0 {
            return Err(ImageError::Spec(
                "created must be a non-negative Unix time".into(),
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for l in &spec.layers {
            if !names.insert(l.name.as_str()) {
                return Err(ImageError::Spec(format!(
                    "layer {:?} is named twice",
                    l.name
                )));
            }
        }
        if spec.layers.is_empty() {
            return Err(ImageError::Spec("no [[layer]]".into()));
        }
        for e in spec
            .config
            .env
            .iter()
            .chain(spec.variants.values().flat_map(|v| &v.env))
        {
            if !e.contains('=') {
                return Err(ImageError::Spec(format!(
                    "env entry {e:?} is not KEY=value"
                )));
            }
        }
        Ok(spec)
    }

    /// The variant by name, or an error naming the ones there are.
    pub fn variant(&self, name: &str) -> Result<&Variant, ImageError> {
        self.variants.get(name).ok_or_else(|| {
            ImageError::Spec(format!(
                "no variant {name:?} (the spec has {:?})",
                self.variants.keys().collect::<Vec<_>>()
            ))
        })
    }

    /// The reference of a variant in `index.json`: `<version>-<variant>`.
    pub fn reference(&self, variant: &str) -> String {
        format!("{}-{variant}", self.version)
    }
}
