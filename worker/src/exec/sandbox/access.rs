//! What a task uid can reach on disk, judged by permission bits (a task uid owns nothing outside
//! its task directory and belongs to no group, so the "other" bits are what apply; ACLs are not
//! read): the runtime and models it must read, and the data directory it must only traverse.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// Entries of the data directory a task uid may traverse (0711): the task directories, the
/// model weights fetched from storage and the measured copies of scripts and weights. Every other entry (the database, the store, the dev TEE key,
/// the signer record...) is made private (group and other bits cleared) at start.
pub const SHARED_DATA_ENTRIES: &[&str] = &["tasks", "models", crate::measured::MEASURED_DIR];

const OTHER_R: u32 = 0o004;
const OTHER_X: u32 = 0o001;

/// Why a task uid cannot read `path` (a file, or a directory it must list and enter), or `None`.
/// Every directory on the way, before and after resolving links, must let others through.
pub fn unreadable(what: &str, path: &Path) -> Option<String> {
    let resolved = match std::fs::canonicalize(path) {
        Ok(p) => p,
        Err(e) => return Some(format!("{what} {}: {e}", path.display())),
    };
    for p in [path.to_path_buf(), resolved.clone()] {
        if let Some(why) = blocked_ancestor(&p) {
            return Some(format!("{what} {}: {why}", path.display()));
        }
    }
    let meta = match std::fs::metadata(&resolved) {
        Ok(m) => m,
        Err(e) => return Some(format!("{what} {}: {e}", path.display())),
    };
    let need = if meta.is_dir() {
        OTHER_R | OTHER_X
    } else {
        OTHER_R
    };
    if meta.mode() & need != need {
        return Some(format!(
            "{what} {} (mode {:04o}) is not readable by others: chmod o+r{} it",
            resolved.display(),
            meta.mode() & 0o7777,
            if meta.is_dir() { "X -R" } else { "" }
        ));
    }
    None
}

/// The first directory above `path` that others cannot traverse, with the fix.
pub fn blocked_ancestor(path: &Path) -> Option<String> {
    let mut dirs: Vec<PathBuf> = path.ancestors().skip(1).map(Path::to_path_buf).collect();
    dirs.reverse();
    for dir in dirs.iter().filter(|d| !d.as_os_str().is_empty()) {
        let Ok(meta) = std::fs::metadata(dir) else {
            continue;
        };
        if meta.mode() & OTHER_X == 0 {
            return Some(format!(
                "the directory {} (mode {:04o}, owner uid {}) blocks traversal by the task uid: chmod o+x it, or move what lies below it (as root the caches belong under /var/cache/sealtune, see scripts/env)",
                dir.display(),
                meta.mode() & 0o7777,
                meta.uid()
            ));
        }
    }
    None
}

/// Why the config file at `path` exposes the wallet key to task uids: it holds `private_key` (or
/// 0G's `privateKeys`) and others can read it. `None` when it holds no key or only its owner can.
pub fn config_exposes_key(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let doc: toml::Table = text.parse().ok()?;
    let holds_key = doc.contains_key("private_key") || doc.contains_key("privateKeys");
    if !holds_key || unreadable("the config file", path).is_some() {
        return None;
    }
    Some(format!(
        "the config file {} holds the wallet key and a training script's uid can read it: chmod 600 it, or pass the key as SEALTUNE_PRIVATE_KEY",
        path.display()
    ))
}

/// Lays the data directory out for task uids: the directory itself 0711 (traversable, not
/// listable), [`SHARED_DATA_ENTRIES`] created and 0711, every other top-level entry private.
/// Returns what still blocks a task uid (an ancestor of the data directory), if anything.
pub fn secure_data_dir(data_dir: &Path) -> std::io::Result<Option<String>> {
    std::fs::create_dir_all(data_dir)?;
    for shared in SHARED_DATA_ENTRIES {
        std::fs::create_dir_all(data_dir.join(shared))?;
    }
    for entry in std::fs::read_dir(data_dir)? {
        let entry = entry?;
        let meta = entry.path().symlink_metadata()?;
        if meta.file_type().is_symlink() {
            continue;
        }
        let name = entry.file_name();
        let mode = if SHARED_DATA_ENTRIES.iter().any(|s| name == **s) {
            0o711
        } else {
            meta.mode() & 0o700
        };
        std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(mode))?;
    }
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o711))?;
    let canonical = std::fs::canonicalize(data_dir)?;
    Ok(blocked_ancestor(&canonical).or_else(|| blocked_ancestor(data_dir)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_ancestor_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("a/b");
        std::fs::create_dir_all(&inner).unwrap();
        std::fs::write(inner.join("f"), "x").unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let why = unreadable("the script", &inner.join("f")).unwrap();
        assert!(
            why.contains(&format!(
                "the directory {} (mode 0700",
                dir.path().display()
            )),
            "{why}"
        );
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        assert_eq!(unreadable("the script", &inner.join("f")), None);
        std::fs::set_permissions(inner.join("f"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let why = unreadable("the script", &inner.join("f")).unwrap();
        assert!(
            why.contains("mode 0600") && why.contains("chmod o+r"),
            "{why}"
        );
    }

    #[test]
    fn a_readable_config_holding_the_wallet_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("worker.toml");
        std::fs::write(&path, "private_key = \"0x01\"\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(config_exposes_key(&path).unwrap().contains("chmod 600"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(config_exposes_key(&path), None);
        std::fs::write(&path, "listen = \"0.0.0.0:1\"\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(config_exposes_key(&path), None);
    }

    #[test]
    fn the_data_dir_is_traversable_and_its_secrets_private() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("store/objects")).unwrap();
        std::fs::write(data.join("worker.sqlite"), "db").unwrap();
        std::fs::set_permissions(
            data.join("worker.sqlite"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        assert_eq!(secure_data_dir(&data).unwrap(), None);
        let mode = |p: &str| std::fs::metadata(data.join(p)).unwrap().mode() & 0o777;
        assert_eq!(mode(""), 0o711);
        assert_eq!(mode("tasks"), 0o711);
        assert_eq!(mode("models"), 0o711);
        assert_eq!(mode("store"), 0o700);
        assert_eq!(mode("worker.sqlite"), 0o600);

        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let why = secure_data_dir(&data).unwrap().unwrap();
        assert!(why.contains(&dir.path().display().to_string()), "{why}");
    }
}
