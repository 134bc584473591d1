//! Evaluating a delivered model, the customer's side (docs/PROTOCOL.md §10).
//!
//! [`Client::evaluate`]: the provider is verified (it must attest a dataset key), the evaluated
//! model's key is unwrapped from its settled deliverable on chain and sealed to that dataset key for
//! this customer and task ([`seal_model_key`]), and an ordinary create-task request v2 is sent whose
//! `trainingParams` carry it ([`EvaluationParams`]); the evaluation dataset is uploaded sealed. The
//! evaluation is then downloaded, acknowledged and decrypted like a model; its only file is the
//! signed report, which [`Client::check_evaluation`] checks against the chain.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use alloy::primitives::{Address, B256, U256};
use sealtune_protocol::deliverable::OsRng;
use sealtune_protocol::evaluation::{
    EvaluationParams, EvaluationReport, REPORT_FILE, SignedEvaluation, seal_model_key,
};

use crate::attest::VerifyProviderOptions;
use crate::error::{ClientError, Result};
use crate::flow::{Client, CreateTaskRequest, CreatedTask, DatasetSource, VerifyMode};
use crate::progress::Progress;

/// An evaluation request.
#[derive(Debug, Clone)]
pub struct EvaluateRequest {
    /// The provider that delivered the model.
    pub provider: Address,
    /// The evaluated task (settled with acknowledgement: the customer holds its key).
    pub task_id: String,
    /// The evaluation dataset.
    pub dataset: DatasetSource,
    /// The most the customer agrees to pay, in neuron.
    pub max_fee: Option<U256>,
    /// Queue behind the provider's other tasks.
    pub wait: bool,
    /// How the provider is verified (it must attest a dataset key).
    pub verify: VerifyProviderOptions,
}

impl Client {
    /// Requests the evaluation of a delivered model (module docs); returns the evaluation task.
    pub async fn evaluate(
        &self,
        req: &EvaluateRequest,
        now_ms: u64,
        upload_progress: Arc<dyn Progress>,
    ) -> Result<CreatedTask> {
        sealtune_protocol::request::parse_task_id(&req.task_id)?;
        let user = self.user()?;
        let verified = self.verify_provider(req.provider, &req.verify).await?;
        verified.require_verified()?;
        let keys = verified.keys.ok_or_else(|| {
            ClientError::NotReady(
                "the provider attests no dataset key: it cannot receive the model key confidentially, so it cannot evaluate".into(),
            )
        })?;
        let evaluated = self.task(req.provider, Some(&req.task_id)).await?;
        let model = evaluated.pre_trained_model_hash.ok_or_else(|| {
            ClientError::InvalidInput(format!("task {} names no model", req.task_id))
        })?;
        let deliverable = self.deliverable(req.provider, &req.task_id).await?;
        let key = crate::model::unwrap_secret(self.key()?, &deliverable.encrypted_secret)?;
        let sealed = seal_model_key(&mut OsRng, &keys.dataset_key, &key, user, &req.task_id);
        let params = EvaluationParams {
            evaluate: req.task_id.clone(),
            model_key: format!("0x{}", hex::encode(sealed)),
        };
        let create = CreateTaskRequest {
            provider: req.provider,
            model,
            dataset: req.dataset.clone(),
            training_params: params.to_text(),
            max_fee: req.max_fee,
            wait: req.wait,
            verify: VerifyMode::Verify(req.verify.clone()),
            dataset_type: None,
        };
        self.create_task(&create, now_ms, upload_progress).await
    }

    /// Checks a signed evaluation report against the chain: the TEE signature in the serving
    /// contract's domain by the provider's `teeSignerAddress`, the document's provider and customer
    /// (this client's), and its evaluated root equal to that task's deliverable on chain.
    pub async fn check_evaluation(
        &self,
        provider: Address,
        signed: &SignedEvaluation,
    ) -> Result<EvaluationReport> {
        let user = self.user()?;
        let (service, _) = self.provider_api(provider).await?;
        let domain = sealtune_protocol::eip712::domain(
            self.chain.chain_id().await?,
            self.chain.serving_address(),
        );
        let bad = ClientError::BadReport;
        let (report, signer) = signed.verify(&domain).map_err(|e| bad(e.to_string()))?;
        if signer != service.tee_signer {
            return Err(bad(format!(
                "signed by {signer}, not the provider's TEE signer {} on chain",
                service.tee_signer
            )));
        }
        if report.user != user || report.provider != provider {
            return Err(bad(format!(
                "it is about {} with provider {}, not {user} with {provider}",
                report.user, report.provider
            )));
        }
        let evaluated = self
            .deliverable(provider, &report.evaluated_task_id)
            .await?;
        if B256::try_from(evaluated.model_root_hash.as_ref()).ok()
            != Some(report.evaluated_root_hash)
        {
            return Err(bad(format!(
                "its evaluated root {} is not task {}'s deliverable on chain",
                report.evaluated_root_hash, report.evaluated_task_id
            )));
        }
        Ok(report)
    }
}

/// Reads a signed evaluation: the report file itself, or a decrypted evaluation (a directory holding
/// `output_model/evaluation_report.json` or `evaluation_report.json`).
pub fn read_signed(path: &Path) -> Result<SignedEvaluation> {
    let file: PathBuf = if path.is_dir() {
        [
            path.join("output_model").join(REPORT_FILE),
            path.join(REPORT_FILE),
        ]
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| {
            ClientError::InvalidInput(format!("no {REPORT_FILE} under {}", path.display()))
        })?
    } else {
        path.to_owned()
    };
    let bytes = std::fs::read(&file).map_err(|e| ClientError::io(&file, e))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ClientError::BadReport(format!(
            "{} is not a signed evaluation: {e}",
            file.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_read_from_its_file_or_a_decrypted_directory() {
        let dir = tempfile::tempdir().unwrap();
        let signed = SignedEvaluation {
            document: "{}".into(),
            signature: "0x00".into(),
        };
        let inner = dir.path().join("eval/output_model");
        std::fs::create_dir_all(&inner).unwrap();
        std::fs::write(
            inner.join(REPORT_FILE),
            serde_json::to_vec(&signed).unwrap(),
        )
        .unwrap();
        assert_eq!(read_signed(&dir.path().join("eval")).unwrap(), signed);
        assert_eq!(read_signed(&inner.join(REPORT_FILE)).unwrap(), signed);
        let e = read_signed(dir.path()).unwrap_err();
        assert!(e.to_string().contains(REPORT_FILE), "{e}");
        std::fs::write(dir.path().join("bad.json"), b"not json").unwrap();
        assert!(matches!(
            read_signed(&dir.path().join("bad.json")),
            Err(ClientError::BadReport(_))
        ));
    }
}
