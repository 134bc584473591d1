//! Fuzz ECIES decryption and public-key parsing: any bytes give a typed error, never a panic or plaintext.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sealtune_protocol::ecies;

fuzz_target!(|data: &[u8]| {
    let _ = ecies::parse_public_key(data);
    // A fixed receiver: without its public key no input can authenticate.
    let receiver = ecies::SecretKey::from_slice(&[0x24; 32]).unwrap();
    assert!(
        ecies::decrypt(&receiver, data).is_err(),
        "random bytes decrypted"
    );
    let _ = ecies::unwrap_key(&receiver, data);
});
