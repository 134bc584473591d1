//! The JSON bodies of the provider API's signed requests (PROTOCOL.md §2): the customer's client
//! writes them and the worker reads them, so both take them from here. The field names are 0G's
//! (camelCase, as the official CLI sends them); what the signatures cover is in [`crate::request`].
//!
//! ```
//! use sealtune_protocol::api::CreateTaskBody;
//! let body: CreateTaskBody = serde_json::from_str(
//!     r#"{"userAddress":"0x1","preTrainedModelHash":"0x2","datasetHash":"0x3",
//!         "trainingParams":"{}","nonce":"1","signature":"0x4"}"#,
//! ).unwrap();
//! assert_eq!((body.fee, body.wait), (None, false)); // the official CLI may leave both out
//! ```

use serde::{Deserialize, Serialize};

use crate::dataset_type::DatasetType;

/// The body of `POST /v1/user/:addr/task`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateTaskBody {
    /// The customer (the client sends it checksummed; any case is read).
    pub user_address: String,
    /// The base model's hash (or name) as the provider lists it.
    pub pre_trained_model_hash: String,
    /// The dataset hash (`0x…`), exactly as signed.
    pub dataset_hash: String,
    /// The training parameters, a JSON string.
    pub training_params: String,
    /// The fee ceiling in neuron (decimal); absent or `"0"` for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee: Option<String>,
    /// The task nonce (decimal).
    pub nonce: String,
    /// The create-task signature (`0x…`, 65 bytes).
    pub signature: String,
    /// Queue behind other tasks when the provider is busy.
    #[serde(default)]
    pub wait: bool,
    /// sealtune: how the dataset's rows become records ([`crate::dataset_type`]); absent: 0G's
    /// three shapes. Not covered by the 0G signature: a request v2 signature binds it through
    /// [`CreateTaskBody::extra_options`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_type: Option<DatasetType>,
    /// `2` for sealtune's request v2 (`crate::request_v2`): then `signature` is the EIP-712
    /// signature over every field; absent for the official forms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_version: Option<u32>,
}

impl CreateTaskBody {
    /// sealtune's extra request options (beyond 0G's fields), as the object whose
    /// `request_v2::options_hash` a v2 request signs: `datasetType` (its canonical JSON,
    /// [`DatasetType::canonical_json`]) when set; `{}` otherwise.
    pub fn extra_options(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut options = serde_json::Map::new();
        if let Some(t) = &self.dataset_type {
            // The canonical form is JSON written by this crate: it always parses.
            let value = serde_json::from_str(&t.canonical_json())
                .unwrap_or_else(|_| serde_json::Value::String(t.canonical_json()));
            options.insert("datasetType".into(), value);
        }
        options
    }
}

/// The body of the signed task requests: `…/cancel` (`signature`) and `…/lora` (`signature` and
/// `timestamp`, unix seconds as a number or a decimal string — both forms occur on the wire).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedBody {
    /// The request signature (`0x…`, 65 bytes).
    pub signature: String,
    /// The signed timestamp, where the request has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the client writes is what the worker reads, field for field and in 0G's names.
    #[test]
    fn create_task_body_round_trips_in_0g_field_names() {
        let body = CreateTaskBody {
            user_address: "0xAb".into(),
            pre_trained_model_hash: "0x2b".into(),
            dataset_hash: "0x3c".into(),
            training_params: "{\"num_train_epochs\":1}".into(),
            fee: Some("7".into()),
            nonce: "1".into(),
            signature: "0x4d".into(),
            wait: true,
            dataset_type: None,
            request_version: None,
        };
        let text = serde_json::to_string(&body).unwrap();
        assert_eq!(
            text,
            r#"{"userAddress":"0xAb","preTrainedModelHash":"0x2b","datasetHash":"0x3c","trainingParams":"{\"num_train_epochs\":1}","fee":"7","nonce":"1","signature":"0x4d","wait":true}"#
        );
        assert_eq!(serde_json::from_str::<CreateTaskBody>(&text).unwrap(), body);
    }

    #[test]
    fn signed_body_leaves_out_a_missing_timestamp() {
        let cancel = SignedBody {
            signature: "0x1".into(),
            timestamp: None,
        };
        assert_eq!(
            serde_json::to_string(&cancel).unwrap(),
            r#"{"signature":"0x1"}"#
        );
        let lora: SignedBody =
            serde_json::from_str(r#"{"signature":"0x1","timestamp":"1700000000"}"#).unwrap();
        assert_eq!(lora.timestamp, Some(serde_json::json!("1700000000")));
    }
}

/// One sealed checkpoint of a task, as `GET /v1/user/:addr/task/:id/checkpoints` lists it (oldest
/// first) to the task's owner: what it holds, never its key or its bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointInfo {
    /// The global training step the checkpoint holds.
    pub step: u64,
    /// The last training loss the script reported at or before that step, when it reported one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// When it was sealed (unix seconds).
    pub created_at: i64,
    /// Size of the sealed file in bytes.
    pub sealed_bytes: u64,
}
