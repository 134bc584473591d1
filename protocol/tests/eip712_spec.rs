//! PROTOCOL.md §1, the TEE signature `settleFees` checks: one test per rule.

use alloy_sol_types::{SolStruct, SolValue};
use k256::ecdsa::SigningKey;
use sealtune_protocol::eip712::{self, Eip712Error, VerifierInput, VerifierMessage};
use sealtune_protocol::sig::{self, SigError, Signature};
use sealtune_protocol::{Address, B256, U256, keccak256};

const CHAIN_ID: u64 = 16602;

fn contract() -> Address {
    Address::repeat_byte(0xc0)
}

fn tee() -> SigningKey {
    SigningKey::from_slice(&[0x7e; 32]).unwrap()
}

fn message() -> VerifierMessage {
    VerifierMessage {
        id: "6c80f154-0b3a-42cd-80a4-f2fcd94ce0e1".into(),
        encryptedSecret: vec![0xab; 129].into(),
        modelRootHash: vec![0xcd; 32].into(),
        nonce: U256::from(17_600_000_000_000_040u64),
        taskFee: U256::from(123_456_789u64),
        user: Address::repeat_byte(0x11),
    }
}

#[test]
fn verifier_message_type_is_the_contracts() {
    let ty = "VerifierMessage(string id,bytes encryptedSecret,bytes modelRootHash,uint256 nonce,uint256 taskFee,address user)";
    assert_eq!(VerifierMessage::eip712_encode_type(), ty);
    assert_eq!(message().eip712_type_hash(), keccak256(ty));
}

#[test]
fn domain_is_name_version_chain_id_and_serving_contract() {
    let type_hash = keccak256(
        "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)",
    );
    let expected = keccak256(
        (
            type_hash,
            keccak256("0G Fine-Tuning Serving"),
            keccak256("1"),
            U256::from(CHAIN_ID),
            contract(),
        )
            .abi_encode(),
    );
    assert_eq!(eip712::domain(CHAIN_ID, contract()).separator(), expected);
}

#[test]
fn digest_is_keccak_of_1901_domain_separator_and_struct_hash() {
    let m = message();
    let d = eip712::domain(CHAIN_ID, contract());
    // hashStruct: dynamic fields (string, bytes) enter as their keccak
    let struct_hash = keccak256(
        (
            m.eip712_type_hash(),
            keccak256(m.id.as_bytes()),
            keccak256(&m.encryptedSecret),
            keccak256(&m.modelRootHash),
            m.nonce,
            m.taskFee,
            m.user,
        )
            .abi_encode(),
    );
    let mut preimage = vec![0x19, 0x01];
    preimage.extend_from_slice(d.separator().as_slice());
    preimage.extend_from_slice(struct_hash.as_slice());
    assert_eq!(m.digest(&d), keccak256(&preimage));
}

#[test]
fn tee_signature_is_over_the_raw_digest_with_v_27_or_28() {
    let d = eip712::domain(CHAIN_ID, contract());
    let input = eip712::sign_verifier_input(&tee(), &d, &message()).unwrap();
    assert_eq!(input.signature.len(), 65);
    assert!(matches!(input.signature[64], 27 | 28));
    let sig = Signature::from_bytes(&input.signature).unwrap();
    // no EIP-191 prefix: the raw digest recovers the TEE signer
    assert_eq!(
        sig.recover_address(&message().digest(&d)).unwrap(),
        sig::address_of(tee().verifying_key())
    );
    assert_eq!(
        eip712::recover_verifier_signer(&d, &input).unwrap(),
        sig::address_of(tee().verifying_key())
    );
}

#[test]
fn signature_for_another_chain_or_contract_does_not_recover_the_tee_signer() {
    let signer = sig::address_of(tee().verifying_key());
    let input =
        eip712::sign_verifier_input(&tee(), &eip712::domain(CHAIN_ID, contract()), &message())
            .unwrap();
    for other in [
        eip712::domain(CHAIN_ID + 1, contract()),
        eip712::domain(CHAIN_ID, Address::repeat_byte(0xc1)),
    ] {
        assert_ne!(
            eip712::recover_verifier_signer(&other, &input).unwrap(),
            signer
        );
    }
}

#[test]
fn any_field_changed_after_signing_does_not_recover_the_tee_signer() {
    let d = eip712::domain(CHAIN_ID, contract());
    let signer = sig::address_of(tee().verifying_key());
    let input = eip712::sign_verifier_input(&tee(), &d, &message()).unwrap();
    let changes: [fn(&mut VerifierInput); 6] = [
        |i| i.id.push('x'),
        |i| i.encryptedSecret = Default::default(),
        |i| i.modelRootHash = vec![0xce; 32].into(),
        |i| i.nonce += U256::from(1u64),
        |i| i.taskFee -= U256::from(1u64),
        |i| i.user = Address::repeat_byte(0x12),
    ];
    for change in changes {
        let mut tampered = input.clone();
        change(&mut tampered);
        assert_ne!(
            eip712::recover_verifier_signer(&d, &tampered).unwrap(),
            signer,
            "{tampered:?}"
        );
    }
}

#[test]
fn deliverable_id_must_be_1_to_256_bytes() {
    let d = eip712::domain(CHAIN_ID, contract());
    for (len, ok) in [(0, false), (1, true), (256, true), (257, false)] {
        let m = VerifierMessage {
            id: "a".repeat(len),
            ..message()
        };
        let r = eip712::sign_verifier_input(&tee(), &d, &m);
        assert_eq!(r.is_ok(), ok, "{len}");
        if !ok {
            assert_eq!(r.unwrap_err(), Eip712Error::IdLength(len));
        }
    }
}

#[test]
fn high_s_tee_signature_is_rejected() {
    let d = eip712::domain(CHAIN_ID, contract());
    let mut input = eip712::sign_verifier_input(&tee(), &d, &message()).unwrap();
    let n = U256::from_str_radix(
        "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
        16,
    )
    .unwrap();
    let mut bytes = input.signature.to_vec();
    let s = U256::from_be_slice(&bytes[32..64]);
    bytes[32..64].copy_from_slice(&(n - s).to_be_bytes::<32>());
    bytes[64] ^= 27 ^ 28;
    input.signature = bytes.into();
    assert_eq!(
        eip712::recover_verifier_signer(&d, &input),
        Err(Eip712Error::Signature(SigError::HighS))
    );
}

#[test]
fn unacknowledged_settlement_signs_an_empty_secret() {
    let d = eip712::domain(CHAIN_ID, contract());
    let m = VerifierMessage {
        encryptedSecret: Default::default(),
        ..message()
    };
    let input = eip712::sign_verifier_input(&tee(), &d, &m).unwrap();
    assert!(input.encryptedSecret.is_empty());
    assert_eq!(
        eip712::recover_verifier_signer(&d, &input).unwrap(),
        sig::address_of(tee().verifying_key())
    );
    assert_ne!(m.digest(&d), message().digest(&d));
}

#[test]
fn verifier_input_round_trips_its_message() {
    let d = eip712::domain(CHAIN_ID, contract());
    let input = eip712::sign_verifier_input(&tee(), &d, &message()).unwrap();
    assert_eq!(input.message(), message());
    assert_ne!(message().digest(&d), B256::ZERO);
}

/// `VerifierInput` has the field names, types and order of `settleFees`'s argument in the official ABI.
#[test]
fn verifier_input_matches_the_official_abi() {
    let abi: serde_json::Value = serde_json::from_slice(&sealtune_e2e::fixture_bytes(
        "abi/FineTuningServing.abi.json",
    ))
    .unwrap();
    let items = abi.get("abi").unwrap_or(&abi).as_array().unwrap().clone();
    let settle = items
        .iter()
        .find(|i| i["name"] == "settleFees")
        .expect("settleFees in the ABI");
    let fields: Vec<String> = settle["inputs"][0]["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c["type"].as_str().unwrap(),
                c["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        VerifierInput::eip712_encode_type(),
        format!("VerifierInput({})", fields.join(","))
    );
}
