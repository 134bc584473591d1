//! Fuzz the customer-request parsers and verifiers (request module) and the settlement-signature
//! recovery (eip712 module): any input gives Ok or a typed error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sealtune_protocol::eip712::{self, VerifierInput};
use sealtune_protocol::fee::{self, PriceCoefficient};
use sealtune_protocol::request::{self, CreateTask};
use sealtune_protocol::{Address, U256};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Split the input into the fields of a request: address | nonce | dataset hash | fee | signature | id | timestamp.
    let mut fields = text.split('|');
    let mut next = || fields.next().unwrap_or("");
    let (address, nonce, dataset, fee_text, signature, id, timestamp) =
        (next(), next(), next(), next(), next(), next(), next());

    let _ = request::parse_address("fuzz", address);
    let _ = request::parse_u256_decimal("fuzz", nonce);
    let _ = request::parse_task_id(id);
    let parsed_timestamp = request::parse_timestamp(timestamp);
    let _ = fee_text.parse::<PriceCoefficient>();
    let _ = fee::epochs_from_training_params(&text);

    if let Ok(sig) = request::parse_signature(signature) {
        if let Ok(task) = CreateTask::from_wire(address, nonce, dataset, fee_text) {
            let _ = task.verify(&sig);
        }
        let now = u64::from(data.first().copied().unwrap_or(0)) << 24;
        let ts = parsed_timestamp.unwrap_or(now);
        if let Ok(task_id) = request::parse_task_id(id) {
            let user = request::parse_address("fuzz", address).unwrap_or(Address::ZERO);
            let _ = request::verify_cancel(user, &task_id, &sig);
            let _ = request::verify_lora_download(user, &task_id, ts, now, &sig);
        }
        let _ = request::verify_dataset_upload(address, ts, now, &sig);
    }

    let input = VerifierInput {
        id: dataset.to_owned(),
        encryptedSecret: Default::default(),
        modelRootHash: data.get(..32).unwrap_or_default().to_vec().into(),
        nonce: U256::from(1u64),
        signature: data
            .get(data.len().saturating_sub(65)..)
            .unwrap_or_default()
            .to_vec()
            .into(),
        taskFee: U256::from(1u64),
        user: Address::ZERO,
    };
    let _ = eip712::recover_verifier_signer(&eip712::domain(16602, Address::ZERO), &input);
});
