//! The executor: the child process `sealtune-worker exec <task dir>` that embeds CPython and runs the
//! model's training script under 0G's argv contract, and the parent-side supervision of that child.
//!
//! Contract with the pipeline (owned by the worker's `pipeline` module):
//! * the parent writes `<task dir>/exec.json` ([`ExecSpec`]) and calls [`spawn`];
//! * the child streams `sealtune_protocol::events` lines to the parent; the parent forwards every
//!   parsed event to the pipeline's channel and turns the script's stdout/stderr into `log` events;
//! * [`spawn`] resolves to an [`ExecOutcome`] once the child exits, or to an [`ExecError`] that names the
//!   reason (crash, non-zero exit, timeout, OOM kill, cancel);
//! * the child never receives the TEE key.
