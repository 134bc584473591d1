//! Property tests of the request parsers and verifiers that see untrusted input: they never panic,
//! they answer with typed errors, and what they accept round-trips.

use proptest::prelude::*;
use sealtune_protocol::eip712::{self, VerifierInput};
use sealtune_protocol::request::{
    self, CreateTask, MAX_TIMESTAMP_AGE_SECS, MAX_TIMESTAMP_SKEW_SECS, RequestError,
};
use sealtune_protocol::{Address, U256};
use uuid::Uuid;

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(1000)
}

/// Arbitrary text, biased towards the characters these parsers care about.
fn texty() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9a-fA-FxX+\\- .]{0,90}",
        "0x[0-9a-fA-F]{0,140}",
        "[0-9]{0,100}",
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn address_parser_never_panics_and_round_trips(s in texty()) {
        match request::parse_address("userAddress", &s) {
            Ok(a) => prop_assert_eq!(format!("{a:x}"), s[2..].to_lowercase()),
            Err(e) => prop_assert!(matches!(e, RequestError::Address { .. }), "{e:?}"),
        }
    }

    #[test]
    fn any_address_text_parses_in_any_case(bytes in any::<[u8; 20]>(), upper in any::<bool>()) {
        let a = Address::from(bytes);
        let text = if upper { a.to_checksum(None) } else { format!("{a:?}").to_lowercase() };
        prop_assert_eq!(request::parse_address("a", &text).unwrap(), a);
    }

    #[test]
    fn decimal_parser_never_panics(s in texty()) {
        match request::parse_u256_decimal("nonce", &s) {
            Ok(v) => {
                prop_assert!(!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()), "{s:?}");
                let canonical = s.trim_start_matches('0');
                prop_assert_eq!(v.to_string(), if canonical.is_empty() { "0" } else { canonical });
            }
            Err(e) => prop_assert!(matches!(e, RequestError::Decimal { field: "nonce", .. }), "{e:?}"),
        }
    }

    #[test]
    fn every_uint256_round_trips_through_decimal(limbs in any::<[u64; 4]>()) {
        let v = U256::from_limbs(limbs);
        prop_assert_eq!(request::parse_u256_decimal("fee", &v.to_string()).unwrap(), v);
    }

    #[test]
    fn timestamp_parser_never_panics_and_round_trips(s in texty(), n in any::<u64>()) {
        if let Err(e) = request::parse_timestamp(&s) {
            prop_assert!(matches!(e, RequestError::Decimal { field: "timestamp", .. }), "{e:?}");
        }
        prop_assert_eq!(request::parse_timestamp(&n.to_string()).unwrap(), n);
    }

    #[test]
    fn task_id_parser_never_panics_and_round_trips(s in texty(), n in any::<u128>()) {
        if let Err(e) = request::parse_task_id(&s) {
            prop_assert!(matches!(e, RequestError::TaskId { .. }), "{e:?}");
        }
        let id = Uuid::from_u128(n);
        prop_assert_eq!(request::parse_task_id(&id.hyphenated().to_string()).unwrap(), id);
    }

    #[test]
    fn signature_parser_never_panics(s in texty()) {
        if let Err(e) = request::parse_signature(&s) {
            prop_assert!(matches!(e, RequestError::Signature(_)), "{e:?}");
        }
    }

    #[test]
    fn verifiers_never_panic_on_arbitrary_signatures(
        sig in proptest::collection::vec(any::<u8>(), 65),
        v in prop_oneof![Just(0u8), Just(1), Just(27), Just(28)],
        nonce in any::<[u64; 4]>(),
        fee in any::<u64>(),
        dataset in texty(),
        id in any::<u128>(),
        ts in any::<u64>(),
        now in any::<u64>(),
        user in any::<[u8; 20]>(),
    ) {
        let mut sig = sig;
        sig[64] = v;
        let Ok(sig) = sealtune_protocol::sig::Signature::from_bytes(&sig) else { return Ok(()) };
        let user = Address::from(user);
        let task = CreateTask { user, nonce: U256::from_limbs(nonce), dataset_hash: dataset, fee: U256::from(fee) };
        // A random signature is either unrecoverable or somebody else's.
        prop_assert!(task.verify(&sig).is_err());
        let id = Uuid::from_u128(id);
        prop_assert!(request::verify_cancel(user, &id, &sig).is_err());
        prop_assert!(request::verify_lora_download(user, &id, ts, now, &sig).is_err());
        prop_assert!(request::verify_dataset_upload(&user.to_checksum(None), ts, now, &sig).is_err());
    }

    #[test]
    fn create_task_wire_parser_never_panics(a in texty(), n in texty(), d in texty(), f in texty()) {
        let _ = CreateTask::from_wire(&a, &n, &d, &f);
    }

    #[test]
    fn timestamp_window_is_exactly_300_s_back_and_60_s_ahead(ts in any::<u64>(), now in any::<u64>()) {
        let ok = if ts <= now { now - ts <= MAX_TIMESTAMP_AGE_SECS } else { ts - now <= MAX_TIMESTAMP_SKEW_SECS };
        prop_assert_eq!(request::check_timestamp(ts, now).is_ok(), ok);
    }

    #[test]
    fn verifier_input_with_arbitrary_signature_never_panics(
        sig in proptest::collection::vec(any::<u8>(), 0..80),
        id in ".{0,300}",
        chain in any::<u64>(),
    ) {
        let input = VerifierInput {
            id,
            encryptedSecret: Default::default(),
            modelRootHash: vec![1; 32].into(),
            nonce: U256::from(1u64),
            signature: sig.into(),
            taskFee: U256::from(1u64),
            user: Address::ZERO,
        };
        let _ = eip712::recover_verifier_signer(&eip712::domain(chain, Address::ZERO), &input);
    }
}
