//! The training script's environment: cleared, then an allowlist copied from the worker's.
//!
//! Nothing of the worker's environment reaches the script unless its name is listed here or in
//! `sandbox.env_allow`: the provider's wallet key (`SEALTUNE_PRIVATE_KEY`), RPC credentials and any
//! other secret the worker was started with stay in the worker. Names starting with `SEALTUNE_` can
//! never be allowed; the executor's own three (`SEALTUNE_EVENTS_FD`, `SEALTUNE_EXEC_PARENT`,
//! `SEALTUNE_EXEC_SANDBOX`) are set by the parent, not copied.

use std::path::Path;

/// Variables every training script may see, when the worker has them: the interpreter and its
/// venv, the offline Hugging Face cache, the locale, and the GPU runtime's selectors.
pub const DEFAULT_ALLOWED: &[&str] = &[
    "PATH",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "VIRTUAL_ENV",
    "HF_HUB_CACHE",
    "HF_HUB_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_HUB_DISABLE_TELEMETRY",
    "TOKENIZERS_PARALLELISM",
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
    "NVIDIA_DRIVER_CAPABILITIES",
    "CUDA_HOME",
    "LD_LIBRARY_PATH",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "PYTORCH_CUDA_ALLOC_CONF",
];

/// The prefix no allowed name may have: the worker's own settings and secrets.
pub const FORBIDDEN_PREFIX: &str = "SEALTUNE_";

/// Whether `name` may be put in `sandbox.env_allow`: a plain variable name, not `SEALTUNE_*`.
pub fn allowable(name: &str) -> Result<(), String> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!("`{name}` is not an environment variable name"));
    }
    if name.starts_with(FORBIDDEN_PREFIX) {
        return Err(format!(
            "`{name}`: variables named {FORBIDDEN_PREFIX}* hold the worker's settings and secrets and never reach a training script"
        ));
    }
    Ok(())
}

/// The script's environment: the allowed variables of `from` (the defaults and `extra`, never
/// `SEALTUNE_*`), then `HOME` and `TMPDIR` inside the task directory, sorted by name.
pub fn child_env(
    from: impl IntoIterator<Item = (String, String)>,
    extra: &[String],
    task_dir: &Path,
) -> Vec<(String, String)> {
    let allowed = |name: &str| {
        allowable(name).is_ok()
            && (DEFAULT_ALLOWED.contains(&name) || extra.iter().any(|e| e == name))
    };
    let mut env: Vec<(String, String)> = from
        .into_iter()
        .filter(|(k, _)| allowed(k) && k != "HOME" && k != "TMPDIR")
        .collect();
    env.push(("HOME".into(), task_dir.join(HOME_DIR).display().to_string()));
    env.push((
        "TMPDIR".into(),
        task_dir.join(TMP_DIR).display().to_string(),
    ));
    env.sort();
    env.dedup_by(|a, b| a.0 == b.0);
    env
}

/// The script's `HOME`, inside the task directory.
pub const HOME_DIR: &str = "home";
/// The script's `TMPDIR`, inside the task directory.
pub const TMP_DIR: &str = "tmp";

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn only_allowed_names_pass_and_secrets_never_do() {
        let from = vars(&[
            ("PATH", "/usr/bin"),
            ("SEALTUNE_PRIVATE_KEY", "0xsecret"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("VIRTUAL_ENV", "/venv"),
            ("QUICK_SCRIPT_MODE", "slow"),
            ("HOME", "/root"),
        ]);
        let env = child_env(from, &["QUICK_SCRIPT_MODE".into()], Path::new("/t"));
        assert_eq!(
            env,
            vars(&[
                ("HOME", "/t/home"),
                ("PATH", "/usr/bin"),
                ("QUICK_SCRIPT_MODE", "slow"),
                ("TMPDIR", "/t/tmp"),
                ("VIRTUAL_ENV", "/venv"),
            ])
        );
    }

    #[test]
    fn a_sealtune_name_cannot_be_allowed_even_by_the_config() {
        let from = vars(&[("SEALTUNE_PRIVATE_KEY", "0xsecret")]);
        let env = child_env(from, &["SEALTUNE_PRIVATE_KEY".into()], Path::new("/t"));
        assert!(
            env.iter().all(|(k, _)| !k.starts_with("SEALTUNE_")),
            "{env:?}"
        );
        assert!(allowable("SEALTUNE_PRIVATE_KEY").is_err());
        assert!(allowable("BAD NAME").is_err());
        assert!(allowable("WANDB_MODE").is_ok());
    }
}
