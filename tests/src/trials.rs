//! One shared stack per test binary, with the binary's cases run against it.
//!
//! A test binary declared with `harness = false` in its crate's `Cargo.toml` has a `main` that builds
//! its stack once (an anvil with the contracts, a provider fixture, a worker…) and runs each case as a
//! [libtest-mimic](https://docs.rs/libtest-mimic) trial: the usual `cargo test` output, `--list`,
//! name filters, `--test-threads`, and a non-zero exit when a case fails. The stack is dropped (its
//! anvil and worker stopped) before `main` returns.
//!
//! ```no_run
//! use sealtune_e2e::contracts::Env;
//! use sealtune_e2e::trials::{self, Isolation};
//!
//! fn main() -> std::process::ExitCode {
//!     trials::run(
//!         Env::new(),
//!         sealtune_e2e::cases![
//!             first_registration_requires_min_stake,
//!             sync pure_rule_without_a_chain,
//!         ],
//!         Isolation::Snapshot(|env: &Env| &env.anvil),
//!     )
//! }
//!
//! async fn first_registration_requires_min_stake(_env: &Env) { /* … */ }
//! fn pure_rule_without_a_chain() { /* … */ }
//! ```
//!
//! With [`Isolation::Snapshot`] the cases run one at a time, each on the chain state the stack had
//! when it was built (`evm_snapshot` once, `evm_revert` before each case), so a case that mutates the
//! chain, or panics half-way, leaves nothing behind for the next one.

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};

use alloy::primitives::U256;
use libtest_mimic::{Arguments, Trial};

use crate::chain::Anvil;

/// A boxed case future borrowing the stack.
pub type CaseFuture<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

/// One case of a shared-stack test binary: a name and what it runs.
pub struct Case<S> {
    name: &'static str,
    body: Body<S>,
}

enum Body<S> {
    /// An async case given the shared stack.
    Shared(for<'a> fn(&'a S) -> CaseFuture<'a>),
    /// A plain synchronous case that needs no stack.
    Plain(fn()),
}

impl<S> Case<S> {
    /// An async case run against the shared stack.
    pub fn shared(name: &'static str, body: for<'a> fn(&'a S) -> CaseFuture<'a>) -> Self {
        Case {
            name,
            body: Body::Shared(body),
        }
    }

    /// A synchronous case that needs no stack (it is run like a `#[test]`).
    pub fn plain(name: &'static str, body: fn()) -> Self {
        Case {
            name,
            body: Body::Plain(body),
        }
    }
}

/// The list of [`Case`]s of a test binary, named after their functions: `name` for
/// `async fn name(stack: &S)`, `sync name` for `fn name()`.
#[macro_export]
macro_rules! cases {
    (@acc [$($out:expr,)*]) => {
        vec![$($out),*]
    };
    (@acc [$($out:expr,)*] sync $name:ident $(, $($rest:tt)*)?) => {
        $crate::cases!(@acc [$($out,)* $crate::trials::Case::plain(stringify!($name), $name),] $($($rest)*)?)
    };
    (@acc [$($out:expr,)*] $name:ident $(, $($rest:tt)*)?) => {
        $crate::cases!(@acc [$($out,)* $crate::trials::Case::shared(
            stringify!($name),
            |s| ::std::boxed::Box::pin($name(s)),
        ),] $($($rest)*)?)
    };
    ($($rest:tt)*) => {
        $crate::cases!(@acc [] $($rest)*)
    };
}

/// How the cases of one binary stay independent of each other. Both kinds run the cases one at a
/// time (a case holds the stack while it runs).
pub enum Isolation<S> {
    /// One case at a time, each on the chain state the stack had when it was built (see the module docs).
    Snapshot(fn(&S) -> &Anvil),
    /// As `Snapshot`, and the function given second resets the rest of the stack (e.g. what a fixture
    /// recorded) before each case.
    SnapshotAnd(fn(&S) -> &Anvil, fn(&S)),
}

impl<S> Isolation<S> {
    fn chain(&self) -> fn(&S) -> &Anvil {
        match self {
            Isolation::Snapshot(chain) | Isolation::SnapshotAnd(chain, _) => *chain,
        }
    }
}

/// Fields drop in order: the stack before the runtime its tasks run on.
struct Shared<S> {
    stack: S,
    runtime: tokio::runtime::Runtime,
    isolation: Isolation<S>,
    /// Held by a case while it runs; the snapshot to revert to.
    turn: Mutex<U256>,
}

/// Parses the test arguments, builds the stack with `setup` (only when a case is left to run after
/// filtering), runs `cases` against it and returns the exit code (failure when any case failed), after
/// the stack is dropped.
pub fn run<S, F>(setup: F, cases: Vec<Case<S>>, isolation: Isolation<S>) -> ExitCode
where
    S: Send + Sync + 'static,
    F: Future<Output = S>,
{
    let args = Arguments::from_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("cannot build the tokio runtime: {e}"));
    let needs_stack = !args.list
        && cases.iter().any(|c| {
            matches!(c.body, Body::Shared(_))
                && !args.is_filtered_out(&Trial::test(c.name, || Ok(())))
        });
    let shared: Option<Arc<Shared<S>>> = needs_stack.then(|| {
        let stack = runtime.block_on(setup);
        let snapshot = runtime.block_on(isolation.chain()(&stack).snapshot());
        Arc::new(Shared {
            stack,
            runtime,
            isolation,
            turn: Mutex::new(snapshot),
        })
    });
    let trials = cases
        .into_iter()
        .map(|case| trial(case, shared.clone()))
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    // The last reference (every trial is gone once `run` returns): anvil, fixture and worker stop here.
    drop(shared);
    conclusion.exit_code()
}

fn trial<S: Send + Sync + 'static>(case: Case<S>, shared: Option<Arc<Shared<S>>>) -> Trial {
    match case.body {
        Body::Plain(body) => Trial::test(case.name, move || {
            body();
            Ok(())
        }),
        Body::Shared(body) => Trial::test(case.name, move || {
            let shared = shared
                .as_ref()
                .unwrap_or_else(|| panic!("no shared stack was built"));
            shared.run(body);
            Ok(())
        }),
    }
}

impl<S: Send + Sync + 'static> Shared<S> {
    fn run(&self, body: for<'a> fn(&'a S) -> CaseFuture<'a>) {
        // A case that panicked poisons the lock; the next case still runs (after a revert).
        let mut snapshot = self.turn.lock().unwrap_or_else(PoisonError::into_inner);
        let anvil = self.isolation.chain()(&self.stack);
        self.runtime.block_on(async {
            anvil.revert(*snapshot).await;
            *snapshot = anvil.snapshot().await;
        });
        if let Isolation::SnapshotAnd(_, reset) = self.isolation {
            reset(&self.stack);
        }
        self.runtime.block_on(body(&self.stack));
    }
}
