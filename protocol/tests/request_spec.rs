//! PROTOCOL.md §2, customer signatures: one test per rule.

use k256::ecdsa::SigningKey;
use sealtune_protocol::request::{
    self, CreateTask, CreateTaskForm, MAX_TIMESTAMP_AGE_SECS, MAX_TIMESTAMP_SKEW_SECS, MessageForm,
    RequestError,
};
use sealtune_protocol::sig::{self, SigError, Signature};
use sealtune_protocol::{Address, U256, keccak256};
use uuid::Uuid;

const NOW: u64 = 1_760_000_000;

fn customer() -> SigningKey {
    SigningKey::from_slice(&[0x5a; 32]).unwrap()
}

fn someone_else() -> SigningKey {
    SigningKey::from_slice(&[0x6b; 32]).unwrap()
}

fn address(key: &SigningKey) -> Address {
    sig::address_of(key.verifying_key())
}

fn task(fee: u64) -> CreateTask {
    CreateTask {
        user: address(&customer()),
        nonce: U256::from(17_600_000_000_000_040u64),
        dataset_hash: "0x2f7c5b9e4e0a0c6f5a9a4c2b3e1d0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a".into(),
        fee: U256::from(fee),
    }
}

fn task_id() -> Uuid {
    Uuid::parse_str("6c80f154-0b3a-42cd-80a4-f2fcd94ce0e1").unwrap()
}

/// The same signature with `v` = 0/1 instead of 27/28.
fn with_v01(s: &Signature) -> Signature {
    Signature::from_bytes(&s.to_bytes_v01()).unwrap()
}

// ---- create task ------------------------------------------------------------------------------

#[test]
fn create_task_digest_is_keccak_of_packed_address_nonce_and_dataset_text() {
    let t = task(0);
    let mut packed = t.user.to_vec(); // address: 20 bytes
    packed.extend_from_slice(&t.nonce.to_be_bytes::<32>()); // uint256: 32 bytes
    packed.extend_from_slice(t.dataset_hash.as_bytes()); // string: its UTF-8 bytes, no length
    assert_eq!(t.digest(CreateTaskForm::WithoutFee), keccak256(&packed));
    packed.extend_from_slice(&U256::from(0u64).to_be_bytes::<32>());
    assert_eq!(t.digest(CreateTaskForm::WithFee), keccak256(&packed));
}

#[test]
fn create_task_signature_recovers_customer() {
    let t = task(0);
    let v = t
        .verify(&t.sign(&customer(), CreateTaskForm::WithoutFee))
        .unwrap();
    assert_eq!(v.signer.address, t.user);
    assert_eq!(v.form, CreateTaskForm::WithoutFee);
    assert_eq!(v.fee_ceiling, None);
}

#[test]
fn create_task_signature_yields_the_customer_public_key_for_ecies() {
    let t = task(0);
    let v = t
        .verify(&t.sign(&customer(), CreateTaskForm::WithoutFee))
        .unwrap();
    assert_eq!(v.signer.public_key, *customer().verifying_key());
    assert_eq!(
        &v.signer.uncompressed_public_key()[..],
        customer()
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
    );
}

#[test]
fn create_task_fee_bound_form_is_accepted_and_reports_the_ceiling() {
    let t = task(5_000);
    let v = t
        .verify(&t.sign(&customer(), CreateTaskForm::WithFee))
        .unwrap();
    assert_eq!(v.form, CreateTaskForm::WithFee);
    assert_eq!(v.fee_ceiling, Some(U256::from(5_000u64)));
}

#[test]
fn create_task_fee_bound_form_with_zero_fee_sets_no_ceiling() {
    let t = task(0);
    let v = t
        .verify(&t.sign(&customer(), CreateTaskForm::WithFee))
        .unwrap();
    assert_eq!(v.form, CreateTaskForm::WithFee);
    assert_eq!(v.fee_ceiling, None);
}

#[test]
fn create_task_plain_form_with_nonzero_fee_field_sets_no_ceiling() {
    // The fee field is not signed in the plain form, so it cannot bind the customer.
    let t = task(5_000);
    let v = t
        .verify(&t.sign(&customer(), CreateTaskForm::WithoutFee))
        .unwrap();
    assert_eq!(v.form, CreateTaskForm::WithoutFee);
    assert_eq!(v.fee_ceiling, None);
}

#[test]
fn create_task_signed_by_another_account_is_rejected() {
    let t = task(0);
    let err = t
        .verify(&t.sign(&someone_else(), CreateTaskForm::WithoutFee))
        .unwrap_err();
    assert_eq!(
        err,
        RequestError::WrongSigner {
            request: "create-task",
            expected: t.user
        }
    );
}

#[test]
fn create_task_with_any_field_changed_after_signing_is_rejected() {
    let t = task(5_000);
    let s = t.sign(&customer(), CreateTaskForm::WithFee);
    let changed = [
        CreateTask {
            nonce: t.nonce + U256::from(1u64),
            ..t.clone()
        },
        CreateTask {
            dataset_hash: t.dataset_hash.to_uppercase(),
            ..t.clone()
        },
        CreateTask {
            fee: U256::from(5_001u64),
            ..t.clone()
        },
        CreateTask {
            user: address(&someone_else()),
            ..t.clone()
        },
    ];
    for c in changed {
        assert!(
            matches!(c.verify(&s), Err(RequestError::WrongSigner { .. })),
            "{c:?}"
        );
    }
}

#[test]
fn create_task_wire_fields_parse_as_decimal_strings_and_an_address() {
    let t = CreateTask::from_wire(
        "0x9aE8e469c2BBEbF9828D46776c4c8aC2802Bff56",
        "17158319464290040",
        "0xabc",
        "0",
    )
    .unwrap();
    assert_eq!(t.nonce, U256::from(17_158_319_464_290_040u64));
    assert_eq!(t.fee, U256::ZERO);
    assert!(matches!(
        CreateTask::from_wire(
            "0x9aE8e469c2BBEbF9828D46776c4c8aC2802Bff56",
            "-1",
            "0xabc",
            "0"
        ),
        Err(RequestError::Decimal { field: "nonce", .. })
    ));
    assert!(matches!(
        CreateTask::from_wire(
            "0x9aE8e469c2BBEbF9828D46776c4c8aC2802Bff56",
            "1",
            "0xabc",
            "1e18"
        ),
        Err(RequestError::Decimal { field: "fee", .. })
    ));
    assert!(matches!(
        CreateTask::from_wire(
            "9aE8e469c2BBEbF9828D46776c4c8aC2802Bff56",
            "1",
            "0xabc",
            "0"
        ),
        Err(RequestError::Address {
            field: "userAddress",
            ..
        })
    ));
}

// ---- signature encoding -------------------------------------------------------------------------

#[test]
fn signatures_with_v_0_1_and_27_28_are_both_accepted() {
    let t = task(0);
    let s = t.sign(&customer(), CreateTaskForm::WithoutFee);
    assert!(t.verify(&s).is_ok());
    assert!(t.verify(&with_v01(&s)).is_ok());
}

#[test]
fn high_s_is_rejected() {
    let t = task(0);
    let mut bytes = t
        .sign(&customer(), CreateTaskForm::WithoutFee)
        .to_bytes_v27();
    let n = U256::from_str_radix(
        "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
        16,
    )
    .unwrap();
    let s = U256::from_be_slice(&bytes[32..64]);
    bytes[32..64].copy_from_slice(&(n - s).to_be_bytes::<32>());
    bytes[64] ^= 27 ^ 28; // the malleable twin flips the parity
    let err = request::parse_signature(&format!("0x{}", hex::encode(bytes))).unwrap_err();
    assert_eq!(err, RequestError::Signature(SigError::HighS));
}

#[test]
fn sdk_message_form_without_leading_zero_bytes_is_accepted() {
    // The official SDK signs `toBeArray(digest)`: a digest starting with 0x00 loses that byte.
    let mut t = task(0);
    while t.digest(CreateTaskForm::WithoutFee)[0] != 0 {
        t.nonce += U256::from(1u64);
    }
    let d = t.digest(CreateTaskForm::WithoutFee);
    let sdk_style = sig::sign_prehash(&customer(), &sig::eip191_hash(&d[1..]));
    let v = t.verify(&sdk_style).unwrap();
    assert_eq!(v.signer.message_form, MessageForm::TrimmedLeadingZeros);
    // ... and the full 32-byte form (go-ethereum's TextHash) is accepted for the same digest.
    let full = t.sign(&customer(), CreateTaskForm::WithoutFee);
    assert_eq!(
        t.verify(&full).unwrap().signer.message_form,
        MessageForm::Full32
    );
}

// ---- cancel -------------------------------------------------------------------------------------

#[test]
fn cancel_digest_is_keccak_of_the_16_uuid_bytes() {
    let id = task_id();
    assert_eq!(request::cancel_digest(&id), keccak256(id.as_bytes()));
}

#[test]
fn cancel_signature_binds_the_task_id() {
    let user = address(&customer());
    let s = request::sign_cancel(&customer(), &task_id());
    assert!(request::verify_cancel(user, &task_id(), &s).is_ok());
    let other = Uuid::from_u128(task_id().as_u128() ^ 1);
    assert!(matches!(
        request::verify_cancel(user, &other, &s),
        Err(RequestError::WrongSigner { .. })
    ));
}

// ---- LoRA download ------------------------------------------------------------------------------

#[test]
fn lora_download_digest_is_lowercase_uuid_hex_then_decimal_seconds() {
    let d = request::lora_download_digest(&task_id(), 1_710_816_913);
    assert_eq!(d, keccak256(b"6c80f1540b3a42cd80a4f2fcd94ce0e11710816913"));
}

#[test]
fn lora_download_signature_recovers_customer() {
    let user = address(&customer());
    let s = request::sign_lora_download(&customer(), &task_id(), NOW);
    let signer = request::verify_lora_download(user, &task_id(), NOW, NOW, &s).unwrap();
    assert_eq!(signer.public_key, *customer().verifying_key());
    // the timestamp is signed: replaying with another one fails
    assert!(matches!(
        request::verify_lora_download(user, &task_id(), NOW + 1, NOW, &s),
        Err(RequestError::WrongSigner { .. })
    ));
}

// ---- dataset upload -----------------------------------------------------------------------------

#[test]
fn dataset_upload_digest_hashes_the_address_text_as_in_the_url() {
    let checksummed = address(&customer()).to_checksum(None);
    let lower = checksummed.to_lowercase();
    assert_eq!(
        request::dataset_upload_digest(&checksummed, NOW),
        keccak256(format!("{checksummed}{NOW}"))
    );
    assert_ne!(
        request::dataset_upload_digest(&checksummed, NOW),
        request::dataset_upload_digest(&lower, NOW)
    );
    for text in [checksummed, lower] {
        let s = request::sign_dataset_upload(&customer(), &text, NOW);
        assert!(
            request::verify_dataset_upload(&text, NOW, NOW, &s).is_ok(),
            "{text}"
        );
    }
}

#[test]
fn dataset_upload_signed_by_another_account_is_rejected() {
    let url = address(&customer()).to_checksum(None);
    let s = request::sign_dataset_upload(&someone_else(), &url, NOW);
    assert!(matches!(
        request::verify_dataset_upload(&url, NOW, NOW, &s),
        Err(RequestError::WrongSigner {
            request: "dataset upload",
            ..
        })
    ));
}

#[test]
fn dataset_upload_url_must_hold_an_address() {
    let s = request::sign_dataset_upload(&customer(), "alice", NOW);
    assert!(matches!(
        request::verify_dataset_upload("alice", NOW, NOW, &s),
        Err(RequestError::Address { .. })
    ));
}

// ---- timestamps ---------------------------------------------------------------------------------

#[test]
fn timestamp_300_s_old_is_accepted() {
    assert_eq!(
        request::check_timestamp(NOW - MAX_TIMESTAMP_AGE_SECS, NOW),
        Ok(())
    );
}

#[test]
fn timestamp_too_old_is_rejected() {
    assert_eq!(
        request::check_timestamp(NOW - 301, NOW),
        Err(RequestError::TimestampTooOld {
            timestamp: NOW - 301,
            age: 301
        })
    );
    assert_eq!(
        request::check_timestamp(0, NOW),
        Err(RequestError::TimestampTooOld {
            timestamp: 0,
            age: NOW
        })
    );
}

#[test]
fn timestamp_60_s_ahead_is_accepted() {
    assert_eq!(
        request::check_timestamp(NOW + MAX_TIMESTAMP_SKEW_SECS, NOW),
        Ok(())
    );
}

#[test]
fn timestamp_too_far_in_the_future_is_rejected() {
    assert_eq!(
        request::check_timestamp(NOW + 61, NOW),
        Err(RequestError::TimestampInFuture {
            timestamp: NOW + 61,
            ahead: 61
        })
    );
    assert!(request::check_timestamp(u64::MAX, NOW).is_err());
}

#[test]
fn expired_request_is_rejected_even_with_a_valid_signature() {
    let user = address(&customer());
    let ts = NOW - 1_000;
    let s = request::sign_lora_download(&customer(), &task_id(), ts);
    assert!(matches!(
        request::verify_lora_download(user, &task_id(), ts, NOW, &s),
        Err(RequestError::TimestampTooOld { .. })
    ));
    let url = user.to_checksum(None);
    let s = request::sign_dataset_upload(&customer(), &url, ts);
    assert!(matches!(
        request::verify_dataset_upload(&url, ts, NOW, &s),
        Err(RequestError::TimestampTooOld { .. })
    ));
}

// ---- parsers and messages -----------------------------------------------------------------------

#[test]
fn task_id_parses_as_a_uuid() {
    assert_eq!(
        request::parse_task_id("6c80f154-0b3a-42cd-80a4-f2fcd94ce0e1").unwrap(),
        task_id()
    );
    assert_eq!(
        request::parse_task_id("6C80F1540B3A42CD80A4F2FCD94CE0E1").unwrap(),
        task_id()
    );
    assert!(matches!(
        request::parse_task_id("../etc/passwd"),
        Err(RequestError::TaskId { .. })
    ));
}

#[test]
fn timestamp_field_parses_as_decimal_seconds() {
    assert_eq!(request::parse_timestamp("1710816913"), Ok(1_710_816_913));
    for bad in ["", "-5", "+5", "1.5", " 1", "0x10", "18446744073709551616"] {
        assert!(
            matches!(
                request::parse_timestamp(bad),
                Err(RequestError::Decimal { .. })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn error_messages_say_what_is_wrong_and_what_to_do() {
    let old = request::check_timestamp(NOW - 400, NOW)
        .unwrap_err()
        .to_string();
    assert!(
        old.contains("400 s old") && old.contains("sign the request again"),
        "{old}"
    );
    let ahead = request::check_timestamp(NOW + 400, NOW)
        .unwrap_err()
        .to_string();
    assert!(
        ahead.contains("in the future") && ahead.contains("clock"),
        "{ahead}"
    );
    let wrong = task(0)
        .verify(&task(0).sign(&someone_else(), CreateTaskForm::WithoutFee))
        .unwrap_err()
        .to_string();
    assert!(
        wrong.contains(&format!("{}", address(&customer()))) && wrong.contains("sign"),
        "{wrong}"
    );
    let nonce = request::parse_u256_decimal("nonce", "12a")
        .unwrap_err()
        .to_string();
    assert!(
        nonce.contains("nonce") && nonce.contains("decimal"),
        "{nonce}"
    );
}
