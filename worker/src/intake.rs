//! Intake rules: what a task may be made of before the provider spends anything on it.
//!
//! - **Datasets belong to their uploader.** A dataset uploaded to the TEE (`POST
//!   /v1/user/:addr/dataset`) is usable only by the addresses whose signed upload stored it (the
//!   official upload signature binds the address and a time, not the bytes, so the worker records the
//!   address it verified with the bytes it stored). Checked at create-task and again at setup. A local
//!   upload with no recorded owner (kept from before owners were recorded and used by no task) is
//!   usable by nobody: its owner uploads it again. Datasets on the 0G Storage network are public by
//!   their nature and usable by anyone who names their root.
//! - **What is counted is all the training reads.** A text dataset zip may hold only the data files
//!   the token count reads (`protocol::dataset::entry_kind`: `.jsonl`, `.json`, `.csv`, `.parquet`,
//!   `.arrow`, plus a saved dataset's `dataset_info.json`/`state.json` beside its Arrow shards, which
//!   are never read; macOS `__MACOSX/._*` metadata is tolerated): a saved `DatasetDict`, a dot-file
//!   or any other file beside them is refused. The count and the preparation read the dataset
//!   through the one reader, `crate::formats::read_dataset`, under the task's `dataset_type`.
//! - **A v2 request binds what it buys.** With `requestVersion: 2` the create-task signature is
//!   EIP-712 typed data over chain, serving contract, provider, model hash, training-params hash,
//!   options hash, dataset hash, fee ceiling and nonce ([`task_request_v2`]); the official forms stay
//!   accepted without it.
//! - **Bounded unpacking.** A dataset zip may declare at most `limits.max_dataset_unpacked_bytes()`
//!   unpacked and `limits.max_dataset_entries()` entries (both in proportion to the upload limit).
use std::io::Read;
use std::path::Path;

use alloy::primitives::{Address, B256};

use crate::config::Limits;
use crate::models::DataType;
use crate::storage;
use crate::store::{Store, StoreError};

/// Why an intake rule refused a task.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The dataset was uploaded to this provider by someone else (or by no one recorded).
    #[error(
        "dataset {hash} was not uploaded by {user}: a dataset uploaded to this provider is usable only by the address that uploaded it; upload it yourself (POST /v1/user/{user:#x}/dataset) and use the hash it answers"
    )]
    NotYours {
        /// The dataset.
        hash: B256,
        /// The task's user.
        user: Address,
    },
    /// The store failed (the provider's side).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whether `user` may train on the dataset `hash`: yes when they uploaded it, or when it is no
/// upload to this provider (a 0G Storage dataset, or one not stored here: setup fetches or fails).
pub async fn check_dataset_owner(
    store: &Store,
    files: &storage::Store,
    user: Address,
    hash: B256,
) -> Result<(), IntakeError> {
    let owners = store.upload_owners(hash).await?;
    if owners.contains(&user) {
        return Ok(());
    }
    // A local object without a 0G root is a TEE upload (fetched and imported objects have one).
    let local_upload = files.stat(&hash).is_some_and(|s| s.root == B256::ZERO);
    if owners.is_empty() && !local_upload {
        return Ok(());
    }
    Err(IntakeError::NotYours { hash, user })
}

/// The EIP-712 domain of v2 requests to this worker: its chain and serving contract.
pub fn request_v2_domain(worker: &crate::app::Worker) -> alloy::sol_types::Eip712Domain {
    sealtune_protocol::request_v2::domain(worker.chain.chain_id, worker.chain.serving_address())
}

/// The v2 request (`sealtune_protocol::request_v2`) this worker would execute for `body`: the
/// provider is this worker's, the model hash the one `preTrainedModelHash` resolved to, the
/// parameters and extra options as received. Its signature must be the customer's over exactly
/// this, so a field rewritten on the way (by the host, a gateway) is refused.
pub fn task_request_v2(
    worker: &crate::app::Worker,
    body: &sealtune_protocol::api::CreateTaskBody,
    wire: &sealtune_protocol::request::CreateTask,
    model_hash: B256,
    dataset_hash: B256,
) -> sealtune_protocol::request_v2::TaskRequest {
    sealtune_protocol::request_v2::TaskRequest::for_body(
        body,
        wire,
        worker.chain.address,
        model_hash,
        dataset_hash,
    )
}

/// Whether a file starts like a zip.
fn is_zip(path: &Path) -> Result<bool, String> {
    let mut magic = [0u8; 4];
    let mut f = std::fs::File::open(path).map_err(|e| format!("cannot open the dataset: {e}"))?;
    let mut got = 0;
    while got < magic.len() {
        match f.read(magic.get_mut(got..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(format!("cannot read the dataset: {e}")),
        }
    }
    Ok(got == 4 && (magic == *b"PK\x03\x04" || magic == *b"PK\x05\x06"))
}

/// macOS Finder's resource-fork entries (`__MACOSX/…/._name`): never read by counting or training.
fn is_apple_double(name: &str) -> bool {
    name.starts_with("__MACOSX/")
        && name
            .rsplit('/')
            .next()
            .is_some_and(|file| file.starts_with("._"))
}

/// A text zip's entries: each one read by the count (or a saved dataset's metadata, or a folder or
/// macOS metadata); anything else is refused.
fn check_text_entries(names: &[String]) -> Result<(), String> {
    use sealtune_protocol::dataset::{EntryKind, Format, entry_kind};
    let hf = names
        .iter()
        .any(|n| entry_kind(n, false) == EntryKind::Data(Format::Arrow));
    for name in names {
        let counted = name.ends_with('/')
            || matches!(
                entry_kind(name, hf),
                EntryKind::Data(_) | EntryKind::HfMetadata
            )
            || is_apple_double(name);
        if !counted {
            let shown: String = name.chars().take(200).collect();
            let hint = if shown.ends_with("dataset_dict.json") {
                " (a saved DatasetDict: save its train split alone, dataset[\"train\"].save_to_disk(...), and zip that folder)"
            } else {
                ""
            };
            return Err(format!(
                "the dataset zip holds `{shown}`, which is not a dataset file{hint}: a text dataset zip may hold only .jsonl, .json, .csv, .parquet or .arrow files (and a saved dataset's dataset_info.json and state.json), since the records counted for the fee must be all the training reads"
            ));
        }
    }
    Ok(())
}

/// Checks a fetched dataset file before it is counted: a zip's declared unpacked size and entry
/// count within `limits`, and a text zip holding nothing but the JSONL files that are counted. A
/// plain (non-zip) file passes: it is read as JSONL, which is what is counted.
pub fn check_dataset_file(path: &Path, data_type: DataType, limits: &Limits) -> Result<(), String> {
    if !is_zip(path)? {
        return Ok(());
    }
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open the dataset: {e}"))?;
    let mut archive =
        zip::ZipArchive::new(file).map_err(|e| format!("the dataset is not a valid zip: {e}"))?;
    let max_entries = limits.max_dataset_entries();
    if archive.len() as u64 > max_entries {
        return Err(format!(
            "the dataset zip has {} entries; this provider accepts at most {max_entries}",
            archive.len()
        ));
    }
    let max_bytes = limits.max_dataset_unpacked_bytes();
    let mut unpacked = 0u64;
    let mut names = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        let entry = archive
            .by_index_raw(i)
            .map_err(|e| format!("the dataset is not a valid zip: {e}"))?;
        unpacked = unpacked.saturating_add(entry.size());
        if unpacked > max_bytes {
            return Err(format!(
                "the dataset zip unpacks to more than {max_bytes} bytes, this provider's limit"
            ));
        }
        let name = entry.name();
        if sealtune_protocol::dataset::is_unsafe_zip_path(name) {
            let shown = name.chars().take(256).collect();
            return Err(sealtune_protocol::dataset::DatasetError::UnsafeZipPath(shown).to_string());
        }
        names.push(name.to_owned());
    }
    if data_type == DataType::Text {
        check_text_entries(&names)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn zip_of(entries: &[(&str, &[u8])]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        {
            let mut z = zip::ZipWriter::new(f.as_file_mut());
            for (name, bytes) in entries {
                if name.ends_with('/') {
                    z.add_directory(*name, zip::write::SimpleFileOptions::default())
                        .unwrap();
                } else {
                    z.start_file(*name, zip::write::SimpleFileOptions::default())
                        .unwrap();
                    z.write_all(bytes).unwrap();
                }
            }
            z.finish().unwrap();
        }
        f
    }

    const REC: &[u8] = b"{\"text\":\"a\"}\n";

    #[test]
    fn a_text_zip_may_hold_only_the_jsonl_files_that_are_counted() {
        let limits = Limits::default();
        let ok = zip_of(&[
            ("data/", b""),
            ("data/train.jsonl", REC),
            ("__MACOSX/data/._train.jsonl", b"x"),
        ]);
        assert_eq!(
            check_dataset_file(ok.path(), DataType::Text, &limits),
            Ok(())
        );
        for extra in [
            "data/dataset_dict.json",
            "data/train/state.json.bak",
            "data/.hidden.jsonl",
            "__MACOSX/data/dataset_dict.json",
            "notes.txt",
        ] {
            let z = zip_of(&[("data/train.jsonl", REC), (extra, b"{}")]);
            let e = check_dataset_file(z.path(), DataType::Text, &limits).unwrap_err();
            assert!(e.contains("only .jsonl"), "{extra}: {e}");
        }
        // Image datasets are folders of images: any file, within the caps.
        let img = zip_of(&[("imgs/cat/1.png", b"png")]);
        assert_eq!(
            check_dataset_file(img.path(), DataType::Image, &limits),
            Ok(())
        );
    }

    #[test]
    fn a_text_zip_may_hold_every_counted_format_and_a_saved_dataset_but_no_dataset_dict() {
        let limits = Limits::default();
        let ok = zip_of(&[
            ("d/a.json", b"[]"),
            ("d/b.csv", b"text\n"),
            ("d/c.parquet", b"PAR1"),
            ("hf/data-00000-of-00001.arrow", b""),
            ("hf/dataset_info.json", b"{}"),
            ("hf/state.json", b"{}"),
        ]);
        assert_eq!(
            check_dataset_file(ok.path(), DataType::Text, &limits),
            Ok(())
        );
        // A saved DatasetDict: which split would be trained is not what is counted.
        let dict = zip_of(&[
            ("dd/dataset_dict.json", b"{}"),
            ("dd/train/data-00000-of-00001.arrow", b""),
            ("dd/train/state.json", b"{}"),
        ]);
        let e = check_dataset_file(dict.path(), DataType::Text, &limits).unwrap_err();
        assert!(
            e.contains("dataset_dict.json") && e.contains("save its train split"),
            "{e}"
        );
        // Without Arrow shards, state.json is a JSON dataset like any other (read and counted).
        let plain = zip_of(&[("x/state.json", b"[]")]);
        assert_eq!(
            check_dataset_file(plain.path(), DataType::Text, &limits),
            Ok(())
        );
    }

    #[test]
    fn a_zip_is_capped_in_proportion_to_the_upload_limit() {
        let limits = Limits {
            max_upload_bytes: 4096,
            dataset_expansion: 2,
            dataset_bytes_per_entry: 1024,
            ..Limits::default()
        };
        let big = vec![b' '; 9000];
        let z = zip_of(&[("a.jsonl", &big)]);
        let e = check_dataset_file(z.path(), DataType::Text, &limits).unwrap_err();
        assert!(e.contains("8192"), "{e}");
        let many: Vec<(String, &[u8])> = (0..5).map(|i| (format!("{i}.jsonl"), REC)).collect();
        let many: Vec<(&str, &[u8])> = many.iter().map(|(n, b)| (n.as_str(), *b)).collect();
        let z = zip_of(&many);
        let e = check_dataset_file(z.path(), DataType::Text, &limits).unwrap_err();
        assert!(e.contains("at most 4"), "{e}");
        // A plain JSONL file is what is counted.
        let mut plain = tempfile::NamedTempFile::new().unwrap();
        plain.write_all(REC).unwrap();
        assert_eq!(
            check_dataset_file(plain.path(), DataType::Text, &limits),
            Ok(())
        );
    }
}
