//! Settle (`Delivered` → `UserAcknowledged` → `Finished`), in its own lane: for every delivered
//! task the chain is read first (a settled deliverable is recorded, never settled twice); a task is
//! settled with the key once the customer acknowledged, with the penalty and no key after the
//! acknowledgement timeout, and without charge when it was sealed under a previous TEE signer.
//! What is recorded as charged is what the chain says: the `FeesSettled` event of the settlement
//! (from its receipt, or, after a crash between `settleFees` and recording it, from the chain's
//! logs), never a fee computed again here.
//!
//! A settlement never strands the customer: a transport failure is retried, a revert that will not
//! go away abandons the deliverable on chain (`abandonDeliverable`: nothing charged, the key
//! withheld) and fails the task with the reason, so the customer's next deliverable can be announced
//! ([`settle_deliverable`], also used for a task cancelled during training).
use std::sync::Arc;

use alloy::primitives::{Address, Bytes, U256};
use sealtune_contracts::bindings::FineTuningServing::Deliverable;
use tokio_util::sync::CancellationToken;

use super::{StepError, chain_err, enter, fail_or_retry, tasks_where};
use crate::app::Worker;
use crate::chain::SettledFees;
use crate::store::{Task, TaskState};

/// Runs the settle lane forever: for every delivered task, reads the chain; settles with the
/// secret once acknowledged, with the penalty after the acknowledgement timeout.
pub async fn run_settle_lane(worker: Arc<Worker>, shutdown: CancellationToken) {
    let lock_time = match worker.chain.lock_time().await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!("cannot read lockTime ({e}); assuming 1 day");
            86_400
        }
    };
    let timeout = worker
        .config
        .limits
        .ack_timeout
        .0
        .as_secs()
        .min(lock_time / 2) as i64;
    let mut waiting_for_owner = false;
    loop {
        match tasks_where(&worker, TaskState::is_settling).await {
            Ok(tasks)
                if !tasks.is_empty() && !signer_usable(&worker, &mut waiting_for_owner).await =>
            {
                // Every settlement would revert (and a revert fails the task): wait instead.
            }
            Ok(tasks) => {
                for task in tasks {
                    if let Err(e) = settle_one(&worker, &task, timeout).await
                        && let Some(r) = fail_or_retry(&worker, &task.id, e).await
                    {
                        tracing::warn!(task = task.id, "settlement will be retried: {r}")
                    }
                }
            }
            Err(e) => tracing::error!("store: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(worker.config.chain.poll()) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Whether the contract would accept this worker's TEE signature now: the service on chain names
/// this signer and the contract owner has acknowledged it (after a signer change the owner must
/// acknowledge the new one first). Logs when waiting starts and ends, not on every poll.
async fn signer_usable(worker: &Worker, waiting: &mut bool) -> bool {
    let why = signer_problem(worker).await;
    match (why, *waiting) {
        (None, true) => {
            tracing::info!("the TEE signer is acknowledged: settlements resume");
            *waiting = false;
            true
        }
        (None, false) => true,
        (Some(why), false) => {
            tracing::warn!("settlements wait: {why}");
            *waiting = true;
            false
        }
        (Some(_), true) => false,
    }
}

/// Why the contract would refuse this worker's TEE signature now, if it would.
async fn signer_problem(worker: &Worker) -> Option<String> {
    let signer = worker.attest.signer();
    match worker.chain.service().await {
        Ok(Some(s)) if s.teeSignerAddress == signer && s.teeSignerAcknowledged => None,
        Ok(Some(s)) if s.teeSignerAddress == signer => Some(format!(
            "the contract owner has not acknowledged the TEE signer {signer} yet"
        )),
        Ok(Some(s)) => Some(format!(
            "the service on chain names the TEE signer {}, not this worker's {signer}",
            s.teeSignerAddress
        )),
        Ok(None) => Some("the service is not registered on chain".to_owned()),
        Err(e) => Some(format!("cannot read the service: {e}")),
    }
}

/// How a task is settled now.
struct Settlement {
    /// Sealed under this earlier TEE signer and not acknowledged: settle without charge.
    old_signer: Option<Address>,
    /// The fee put in the settlement.
    fee: U256,
}

/// Settles one delivered task if it is due (see the module docs).
async fn settle_one(worker: &Worker, task: &Task, timeout: i64) -> Result<(), StepError> {
    let user = task.user_address;
    let Some(d) = worker
        .chain
        .deliverable(user, &task.id)
        .await
        .map_err(|e| chain_err("reading the deliverable", e))?
    else {
        return Err(StepError::fail("the deliverable is not on chain"));
    };
    let fee = task.task_fee.unwrap_or(U256::ZERO);
    if d.settled {
        // Settled already (e.g. before a crash): record what its `FeesSettled` event says was
        // charged, never settle twice.
        let settled = worker
            .chain
            .fees_settled(user, &task.id, task.nonce)
            .await
            .map_err(|e| chain_err("reading the FeesSettled event", e))?
            .ok_or_else(|| {
                StepError::Retry(
                    "the deliverable is settled on chain but its FeesSettled event was not found"
                        .into(),
                )
            })?;
        if record(worker, task, &settled).await? {
            worker
                .task_log(
                    &task.id,
                    format!("settlement found on chain: {} neuron charged", settled.fee),
                )
                .await;
        }
        return Ok(());
    }
    let Some(settlement) = due(worker, task, &d, fee, timeout).await? else {
        return Ok(());
    };
    worker.crash.hit("before-settle");
    send(worker, task, &d, &settlement).await
}

/// Whether `task` is to be settled now, and how: once acknowledged (moving it to
/// `UserAcknowledged`), at once without charge when sealed under a TEE signer this worker no
/// longer has, or with the penalty after `timeout` seconds without acknowledgement. Logs why.
async fn due(
    worker: &Worker,
    task: &Task,
    d: &Deliverable,
    fee: U256,
    timeout: i64,
) -> Result<Option<Settlement>, StepError> {
    let acknowledged = d.acknowledged;
    // Sealed under a TEE signer this worker no longer has (a signer change since): the customer's
    // client checks the tag signature against the signer now on chain and cannot accept the
    // model, so waiting for the timeout would only charge a penalty for a model they could not
    // check. Released at once, without charge.
    let current = worker.attest.signer();
    let old_signer = task.tee_signer.filter(|s| *s != current);
    let fee = if !acknowledged && old_signer.is_some() {
        U256::ZERO
    } else {
        fee
    };
    let delivered_at = task.deliver_time.unwrap_or(task.updated_at);
    if acknowledged {
        if enter(
            worker,
            task,
            &[TaskState::Delivered],
            TaskState::UserAcknowledged,
        )
        .await?
        {
            worker
                .task_log(&task.id, "the customer acknowledged the model; settling")
                .await;
        }
    } else if let Some(old) = old_signer {
        worker
            .task_log(
                &task.id,
                format!(
                    "this model was sealed under the previous TEE signer {old}; the customer cannot check it against the new signer {current}: settling without charge, the key is withheld"
                ),
            )
            .await;
    } else if worker.clock.now() - delivered_at < timeout {
        return Ok(None);
    } else {
        worker
            .task_log(
                &task.id,
                format!("no acknowledgement within {timeout} s: settling with the penalty; the key is withheld"),
            )
            .await;
    }
    Ok(Some(Settlement { old_signer, fee }))
}

/// Settles `task` on chain and commits the outcome: `Finished` with what was charged, or `Failed`
/// when the contract refused the settlement for good and the deliverable was abandoned.
async fn send(
    worker: &Worker,
    task: &Task,
    d: &Deliverable,
    s: &Settlement,
) -> Result<(), StepError> {
    let settled = match settle_deliverable(worker, task, d, s.fee).await? {
        Outcome::Charged(settled) => settled,
        Outcome::Abandoned(reason) => {
            if let Ok(true) = worker
                .store
                .fail(&task.id, &reason, worker.clock.now())
                .await
            {
                worker.metrics.state(TaskState::Failed);
            }
            return Ok(());
        }
        Outcome::Gone => return Ok(()),
    };
    record(worker, task, &settled).await?;
    worker
        .task_log(
            &task.id,
            format!(
                "settled in {}: {} neuron charged{}",
                settled
                    .tx
                    .map_or_else(|| "an earlier transaction".to_owned(), |t| t.to_string()),
                settled.fee,
                match (settled.acknowledged, s.old_signer) {
                    (true, _) => "",
                    (false, Some(_)) => " (sealed under the previous TEE signer: no charge)",
                    (false, None) => " (penalty)",
                }
            ),
        )
        .await;
    Ok(())
}

/// What became of a settlement sent by [`settle_deliverable`].
pub(super) enum Outcome {
    /// Settled: the chain's `FeesSettled` event.
    Charged(SettledFees),
    /// The contract refused the settlement for a reason that will not go away; the deliverable was
    /// abandoned on chain (nothing charged, the key withheld). The reason, for the customer.
    Abandoned(String),
    /// The deliverable was settled meanwhile (a lost answer): the next read records it.
    Gone,
}

/// Signs the settlement of deliverable `d` of `task` for `fee` with the TEE key (with the model key
/// when the customer acknowledged it, else empty: the penalty path) and sends it.
///
/// A transport failure is retried. A revert is first checked against what can change on its own —
/// the TEE signer on chain (not acknowledged by the owner, or changed: the caller waits for it) and
/// the customer acknowledging between the read and the transaction — and retried then; any other
/// revert will not go away (the account's nonce moved past the task's, the balance cannot pay what
/// is charged, the customer revoked the signer, a mismatched root), so the deliverable is abandoned
/// on chain: nothing is charged, the key is withheld, and the customer's next deliverable is not
/// blocked (`addDeliverable` needs the previous one acknowledged or settled).
pub(super) async fn settle_deliverable(
    worker: &Worker,
    task: &Task,
    d: &Deliverable,
    fee: U256,
) -> Result<Outcome, StepError> {
    let user = task.user_address;
    let secret = if d.acknowledged {
        task.encrypted_secret.clone().unwrap_or_default()
    } else {
        Bytes::new()
    };
    let message = sealtune_protocol::eip712::VerifierMessage {
        id: task.id.clone(),
        encryptedSecret: secret,
        modelRootHash: d.modelRootHash.clone(),
        nonce: task.nonce,
        taskFee: fee,
        user,
    };
    let domain =
        sealtune_protocol::eip712::domain(worker.chain.chain_id, worker.chain.serving_address());
    let input = sealtune_protocol::eip712::sign_verifier_input(
        worker.attest.signing_key(),
        &domain,
        &message,
    )
    .map_err(|e| StepError::fail(e.to_string()))?;
    let receipt = match worker.chain.settle(&input).await {
        Ok(r) => r,
        Err(e) => {
            // The chain may have settled it after all (a lost response): read before deciding.
            let now = worker.chain.deliverable(user, &task.id).await;
            if let Ok(Some(now)) = &now
                && now.settled
            {
                return Ok(Outcome::Gone);
            }
            if !crate::chain::is_permanent(&e) {
                return Err(chain_err("settleFees", e));
            }
            if let Some(why) = signer_problem(worker).await {
                return Err(StepError::Retry(format!("settleFees: {e} ({why})")));
            }
            match now {
                Ok(Some(now)) if now.acknowledged == d.acknowledged => {}
                Ok(None) => {}
                _ => {
                    return Err(StepError::Retry(format!(
                        "settleFees: {e} (the deliverable changed meanwhile: settling again)"
                    )));
                }
            }
            return abandon(worker, task, &e).await;
        }
    };
    worker.crash.hit("after-settle");
    SettledFees::from_receipt(
        &receipt,
        worker.chain.serving_address(),
        &task.id,
        task.nonce,
    )
    .map(Outcome::Charged)
    .ok_or_else(|| {
        StepError::Retry(format!(
            "the settlement {} has no FeesSettled event in its receipt; it is read from the chain next",
            receipt.transaction_hash
        ))
    })
}

/// Abandons `task`'s deliverable on chain after the settlement reverted with `why` (see
/// [`settle_deliverable`]); a customer whose account is gone has nothing on chain to unblock.
async fn abandon(
    worker: &Worker,
    task: &Task,
    why: &sealtune_contracts::ContractError,
) -> Result<Outcome, StepError> {
    use sealtune_contracts::bindings::FineTuningServing as S;
    let reason = format!(
        "the settlement was refused on chain ({why}); the deliverable was abandoned: nothing is charged, the key is withheld, and the customer's next task is not blocked"
    );
    match worker
        .chain
        .abandon_deliverable(task.user_address, &task.id)
        .await
    {
        Ok(receipt) => {
            worker
                .task_log(
                    &task.id,
                    format!("abandoned on chain in {}", receipt.transaction_hash),
                )
                .await;
            Ok(Outcome::Abandoned(reason))
        }
        Err(e) if e.is::<S::AccountNotExists>() || e.is::<S::DeliverableNotExists>() => {
            Ok(Outcome::Abandoned(format!(
                "the settlement was refused on chain ({why}) and the customer's account or deliverable is gone: nothing is charged"
            )))
        }
        Err(e) if e.is::<S::DeliverableAlreadySettled>() => Ok(Outcome::Gone),
        Err(e) => Err(StepError::Retry(format!(
            "abandonDeliverable after a refused settlement: {e}"
        ))),
    }
}

/// Commits `Finished` with what the chain charged; whether the task moved.
async fn record(worker: &Worker, task: &Task, settled: &SettledFees) -> Result<bool, StepError> {
    let moved = worker
        .store
        .set_settled(
            &task.id,
            settled.tx,
            settled.fee,
            settled.acknowledged,
            worker.clock.now(),
        )
        .await?;
    if moved {
        worker.metrics.state(TaskState::Finished);
    }
    Ok(moved)
}
