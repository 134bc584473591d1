//! Property tests of the ECIES key wrap: decryption of random or altered bytes never panics and never
//! returns plaintext.

use proptest::prelude::*;
use rand_core::OsRng;
use sealtune_protocol::ecies::{self, SecretKey};

fn receiver() -> SecretKey {
    SecretKey::from_slice(&[0x24; 32]).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn decrypt_never_panics_and_refuses_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300), uncompressed in any::<bool>()) {
        let mut bytes = bytes;
        if uncompressed && !bytes.is_empty() {
            bytes[0] = 0x04;
        }
        prop_assert!(ecies::decrypt(&receiver(), &bytes).is_err());
        prop_assert!(ecies::unwrap_key(&receiver(), &bytes).is_err());
        let _ = ecies::parse_public_key(&bytes);
    }

    #[test]
    fn altered_payload_is_refused(
        plain in proptest::collection::vec(any::<u8>(), 0..64),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..3),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let sk = receiver();
        let payload = ecies::encrypt(&mut OsRng, &sk.public_key(), &plain);
        let opened = ecies::decrypt(&sk, &payload).unwrap();
        prop_assert_eq!(opened.as_slice(), plain.as_slice());
        let mut bytes = payload.clone();
        for (at, x) in &edits {
            let i = at.index(bytes.len());
            bytes[i] ^= x;
        }
        if let Some(c) = cut {
            bytes.truncate(c.index(bytes.len()));
        }
        if bytes != payload {
            prop_assert!(ecies::decrypt(&sk, &bytes).is_err());
        }
    }
}
