//! The local store: TEE uploads (size limit, keccak256 ids), importing finished files (keccak256
//! and the 0G root in one pass, moved not copied), fetch from the store and `NotFound`, removal.

use std::path::Path;

use alloy::primitives::{B256, keccak256};
use sealtune_protocol::storage::root_hash;
use sealtune_worker::storage::{StorageConfig, StorageError, Store, ZgStorageConfig, hash_file};

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn store(dir: &Path) -> Store {
    Store::open(&StorageConfig::default(), dir).unwrap()
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[tokio::test]
async fn upload_is_keyed_by_its_keccak256() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let data = pattern(1_000_003);
    let stored = s.put_upload(data.as_slice(), 2_000_000).await.unwrap();
    assert_eq!(stored.keccak, keccak256(&data));
    assert_eq!(stored.len, data.len() as u64);
    assert_eq!(stored.root, B256::ZERO);
    assert_eq!(std::fs::read(&stored.path).unwrap(), data);
    assert_eq!(s.path_of(&stored.keccak), Some(stored.path.clone()));
    assert!(stored.path.starts_with(dir.path().join("store")));
    // The same bytes again: the same object, one copy.
    let again = s.put_upload(data.as_slice(), 2_000_000).await.unwrap();
    assert_eq!(again, stored);
    assert_eq!(entries(&dir.path().join("store/objects")), 1);
    assert_eq!(entries(&dir.path().join("store/tmp")), 0);
}

#[tokio::test]
async fn upload_over_the_limit_is_refused_and_nothing_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let data = pattern(300_000);
    let err = s.put_upload(data.as_slice(), 299_999).await.unwrap_err();
    assert!(
        matches!(err, StorageError::TooLarge { limit: 299_999, len } if len > 299_999),
        "{err}"
    );
    assert_eq!(entries(&dir.path().join("store/objects")), 0);
    assert_eq!(entries(&dir.path().join("store/tmp")), 0);
    assert_eq!(s.path_of(&keccak256(&data)), None);
    // Exactly at the limit is fine.
    s.put_upload(data.as_slice(), 300_000).await.unwrap();
}

#[tokio::test]
async fn empty_upload_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let err = s.put_upload(&b""[..], 10).await.unwrap_err();
    assert!(matches!(err, StorageError::Empty), "{err}");
    assert_eq!(entries(&dir.path().join("store/tmp")), 0);
}

#[tokio::test]
async fn import_computes_both_hashes_and_moves_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    // Past one 4 MiB read block and with flow padding segments.
    for len in [1usize, 4097, 4 * 1024 * 1024 + 1, 9_000_000] {
        let data = pattern(len);
        let src = dir.path().join(format!("deliverable-{len}.bin"));
        std::fs::write(&src, &data).unwrap();
        let stored = s.import_file(&src).await.unwrap();
        assert_eq!(stored.keccak, keccak256(&data), "{len}");
        assert_eq!(stored.root, root_hash(&data).unwrap().root(), "{len}");
        assert_eq!(stored.len, len as u64);
        assert!(!src.exists(), "moved, not copied");
        assert_eq!(s.path_of(&stored.keccak), Some(stored.path.clone()));
        assert_eq!(s.path_of(&stored.root), Some(stored.path.clone()));
        assert_eq!(s.stat(&stored.root), Some(stored.clone()));
        assert_eq!(std::fs::read(&stored.path).unwrap(), data);
    }
}

#[test]
fn hash_file_matches_protocol_and_keccak_on_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    std::fs::write(&p, pattern(5_000_000)).unwrap();
    let (k, tree) = hash_file(&p).unwrap();
    assert_eq!(
        tree.root().to_string(),
        "0xba0c9b0f93e8906cbe34d8b59f3f43d62c7312aeaec448d24912a924c1c9680c"
    );
    assert_eq!(k, keccak256(pattern(5_000_000)));
    std::fs::write(&p, b"").unwrap();
    assert!(matches!(hash_file(&p), Err(StorageError::Empty)));
    assert!(matches!(
        hash_file(&dir.path().join("absent")),
        Err(StorageError::Io { .. })
    ));
}

#[tokio::test]
async fn import_of_a_missing_or_empty_file_fails_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    assert!(s.import_file(&dir.path().join("absent")).await.is_err());
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(
        s.import_file(&empty).await,
        Err(StorageError::Empty)
    ));
    assert!(empty.exists());
    assert_eq!(entries(&dir.path().join("store/objects")), 0);
}

#[tokio::test]
async fn fetch_resolves_uploads_and_roots_locally_and_names_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let up = s.put_upload(&b"dataset"[..], 100).await.unwrap();
    let dest = dir.path().join("work");
    assert_eq!(s.fetch(&up.keccak, &dest).await.unwrap(), up.path);
    let src = dir.path().join("model.bin");
    std::fs::write(&src, pattern(70_000)).unwrap();
    let model = s.import_file(&src).await.unwrap();
    assert_eq!(s.fetch(&model.root, &dest).await.unwrap(), model.path);
    let unknown = B256::repeat_byte(0xab);
    let err = s.fetch(&unknown, &dest).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StorageError::NotFound(_)), "{msg}");
    assert!(msg.contains(&unknown.to_string()), "{msg}");
    assert!(msg.contains("local store"), "{msg}");
    assert!(msg.contains("not configured"), "{msg}");
}

#[tokio::test]
async fn remove_deletes_the_object_and_its_aliases() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let src = dir.path().join("d.bin");
    std::fs::write(&src, pattern(10_000)).unwrap();
    let stored = s.import_file(&src).await.unwrap();
    s.remove(&stored.root).await.unwrap();
    assert_eq!(s.path_of(&stored.keccak), None);
    assert_eq!(s.path_of(&stored.root), None);
    assert!(!stored.path.exists());
    for sub in ["objects", "roots", "meta"] {
        assert_eq!(entries(&dir.path().join("store").join(sub)), 0, "{sub}");
    }
    // Removing again (or something never stored) is not an error.
    s.remove(&stored.keccak).await.unwrap();
}

#[tokio::test]
async fn open_empties_tmp_and_checks_the_network_config() {
    let dir = tempfile::tempdir().unwrap();
    drop(store(dir.path()));
    std::fs::write(dir.path().join("store/tmp/upload-stale"), b"partial").unwrap();
    drop(store(dir.path()));
    assert_eq!(entries(&dir.path().join("store/tmp")), 0);
    let cfg: StorageConfig = toml::from_str("[zg]\nnodes = []\n").unwrap();
    assert!(matches!(
        Store::open(&cfg, dir.path()),
        Err(StorageError::Config(_))
    ));
    let cfg: StorageConfig =
        toml::from_str("local_dir = \"/tmp/x\"\n[zg]\nnodes = [\"http://127.0.0.1:1\"]\n").unwrap();
    assert_eq!(cfg.local_dir.as_deref(), Some(Path::new("/tmp/x")));
    let zg: &ZgStorageConfig = cfg.zg.as_ref().unwrap();
    assert_eq!(zg.max_download, 64 << 30);
    // `upload_limit` was documented but never read (uploads are capped by
    // `limits.max_upload_bytes`): it is refused now, like any unknown key.
    assert!(toml::from_str::<StorageConfig>("upload_limit = 5").is_err());
}

#[tokio::test]
async fn uploading_the_same_bytes_again_renews_the_object_for_retention() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let data = pattern(10_000);
    let stored = s.put_upload(data.as_slice(), 20_000).await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // Age the object by an hour, as if uploaded for a task that has since ended.
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::open(&stored.path)
        .unwrap()
        .set_modified(hour_ago)
        .unwrap();
    assert_eq!(s.touched_since(&stored.keccak, now - 60), Some(false));
    // A new upload of the same bytes (a new task on the way): the object counts as fresh.
    s.put_upload(data.as_slice(), 20_000).await.unwrap();
    assert_eq!(s.touched_since(&stored.keccak, now - 60), Some(true));
    assert_eq!(s.touched_since(&keccak256(b"absent"), now), None);
}
