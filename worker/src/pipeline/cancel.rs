//! Cancel while training (issue 23): a task in `Training` that its owner cancels, or whose funds are
//! retrieved from under it, is stopped; nothing is delivered; the cancel is charged on chain; the task
//! fails with the reason; the customer's next task runs.
//!
//! **The fee rule** (docs/customer-guide.md): a cancel before training is free; a cancel during
//! training is charged like a model that was delivered and never acknowledged — the contract's
//! `penaltyPercentage` (30 % by default) of the task fee. Anything cheaper would let a customer escape
//! the penalty of an unacknowledged model by cancelling just before delivery. It goes through the
//! existing entry points: `addDeliverable(user, id, 32 zero bytes)` (no model: the all-zero root),
//! then `settleFees` with an empty secret, which the contract charges at the penalty share
//! ([`super::settle::settle_deliverable`], so a refused settlement abandons the deliverable as for
//! any other task).
//!
//! **Funds retrieved during training** (issue 18): a customer who requests a refund of the funds
//! behind the fee while the model trains (`retrieveFund` → `requestRefundAll`) would, once the refund
//! matured (`lockTime`, at least an hour), leave nothing to charge the penalty from. The training lane
//! watches the account ([`watch_funds`]); when less than the fee is left outside pending refunds, the
//! task is cancelled with the same rule, and `settleFees` takes the penalty from the pending refund
//! before it can mature.
//!
//! Crash safety: the reason is committed before the child is stopped; a task found in `Training`
//! with a reason is settled, never trained again; the chain is read before each transaction.
use std::sync::Arc;

use alloy::primitives::{B256, U256};

use super::settle::{Outcome, settle_deliverable};
use super::{StepError, chain_err, sealing};
use crate::app::Worker;
use crate::store::{StoreError, Task};

/// The reason recorded for the owner's cancel during training.
pub const BY_CUSTOMER: &str = "cancelled by the customer during training";

/// Stops task `id` (in `Training`) for `reason`: commits the reason, then stops its child if it is
/// running. Returns whether this call stopped it (`false`: not in `Training`, or already stopped).
pub async fn request(worker: &Worker, id: &str, reason: &str) -> Result<bool, StoreError> {
    let moved = worker
        .store
        .cancel_training(id, reason, worker.clock.now())
        .await?;
    if moved {
        worker
            .task_log(
                id,
                format!("{reason}: training stops, nothing is delivered"),
            )
            .await;
        stop_child(worker, id);
        worker.wake.notify_one();
    }
    Ok(moved)
}

/// Cancels the running child's token when the child is `id`'s.
pub(super) fn stop_child(worker: &Worker, id: &str) {
    let running = worker.running.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((task, token)) = running.as_ref()
        && task == id
    {
        token.cancel();
    }
}

/// Watches the customer's account while `task` trains (every chain poll): once less than the task's
/// fee is left outside pending refunds (or the account is gone), stops the task. Runs until aborted.
pub(super) async fn watch_funds(worker: Arc<Worker>, task: Task) {
    let fee = task.task_fee.unwrap_or(U256::ZERO);
    if fee.is_zero() {
        return;
    }
    loop {
        tokio::time::sleep(worker.config.chain.poll()).await;
        let why = match worker.chain.account(task.user_address).await {
            Ok(Some(a)) if a.balance.saturating_sub(a.pendingRefund) >= fee => continue,
            Ok(Some(a)) => format!(
                "the funds behind the fee were retrieved during training ({} neuron left outside pending refunds, the fee is {fee}): cancelled as by the customer",
                a.balance.saturating_sub(a.pendingRefund)
            ),
            Ok(None) => {
                "the customer's account was deleted during training: cancelled as by the customer"
                    .to_owned()
            }
            Err(e) => {
                tracing::warn!(
                    task = task.id,
                    "cannot read the account during training: {e}"
                );
                continue;
            }
        };
        if let Err(e) = request(&worker, &task.id, &why).await {
            tracing::error!(task = task.id, "store: {e}");
            continue;
        }
        return;
    }
}

/// Settles a task stopped during training by the fee rule (module docs) and fails it with its
/// reason and what was charged. Safe to run again: the chain is read first.
pub(super) async fn settle_cancelled(worker: &Worker, task: &Task) -> Result<(), StepError> {
    let reason = task.cancelled.clone().unwrap_or_else(|| BY_CUSTOMER.into());
    discard_outputs(worker, task).await?;
    let fee = task.task_fee.unwrap_or(U256::ZERO);
    if fee.is_zero() {
        return finish(
            worker,
            task,
            format!("{reason}; nothing is charged"),
            None,
            fee,
        )
        .await;
    }
    let user = task.user_address;
    let read = |e| chain_err("reading the deliverable", e);
    let d = match worker
        .chain
        .deliverable(user, &task.id)
        .await
        .map_err(read)?
    {
        Some(d) => d,
        None => {
            if let Err(e) = worker
                .chain
                .add_deliverable(user, &task.id, B256::ZERO)
                .await
            {
                if !crate::chain::is_permanent(&e) {
                    return Err(chain_err("addDeliverable (cancel)", e));
                }
                let why =
                    format!("{reason}; the cancel could not be charged ({e}): nothing is charged");
                return finish(worker, task, why, None, U256::ZERO).await;
            }
            worker
                .chain
                .deliverable(user, &task.id)
                .await
                .map_err(read)?
                .ok_or_else(|| StepError::retry("the cancel's deliverable is not readable yet"))?
        }
    };
    if d.settled {
        let settled = worker
            .chain
            .fees_settled(user, &task.id, task.nonce)
            .await
            .map_err(|e| chain_err("reading the FeesSettled event", e))?;
        let (tx, fee) = settled.map_or((None, U256::ZERO), |s| (s.tx, s.fee));
        return finish(worker, task, charged(&reason, fee), tx, fee).await;
    }
    match settle_deliverable(worker, task, &d, fee).await? {
        Outcome::Charged(s) => finish(worker, task, charged(&reason, s.fee), s.tx, s.fee).await,
        Outcome::Abandoned(why) => {
            finish(worker, task, format!("{reason}; {why}"), None, U256::ZERO).await
        }
        Outcome::Gone => Err(StepError::retry(
            "the cancel was settled meanwhile: reading it next",
        )),
    }
}

fn charged(reason: &str, fee: U256) -> String {
    format!(
        "{reason}; {fee} neuron charged (the penalty share of the fee, as for a model never acknowledged)"
    )
}

/// Deletes what the stopped run wrote (output, sealed files): nothing of it is delivered.
async fn discard_outputs(worker: &Worker, task: &Task) -> Result<(), StepError> {
    use crate::exec::sandbox::uid::{remove_any, take_back};
    let dir = worker.task_dir(&task.id);
    if dir.exists() {
        take_back(&dir).map_err(StepError::retry)?;
        remove_any(&dir.join("output")).map_err(StepError::retry)?;
        sealing::discard(&dir).await?;
    }
    Ok(())
}

/// Commits `Failed` with `reason` and what was charged.
async fn finish(
    worker: &Worker,
    task: &Task,
    reason: String,
    tx: Option<B256>,
    fee: U256,
) -> Result<(), StepError> {
    if worker
        .store
        .finish_cancelled(&task.id, &reason, tx, fee, worker.clock.now())
        .await?
    {
        worker.metrics.state(crate::store::TaskState::Failed);
    }
    Ok(())
}
