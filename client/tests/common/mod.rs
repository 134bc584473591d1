//! The client tests' view of the one harness (`sealtune_e2e`): the real contracts on anvil
//! ([`sealtune_e2e::contracts::Env`], which this `Env` derefs to), a provider service registered at the
//! provider fixture's URL ([`sealtune_e2e::provider_fixture`]), and the `sealtune_client` handles on
//! them. Only what needs `sealtune_client` types lives here.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::signers::local::PrivateKeySigner;
use sealtune_client::chain::{Chain, Contracts};
use sealtune_client::flow::Client;
use sealtune_e2e::contracts::{self, Service};
use sealtune_e2e::provider_fixture::FixtureProvider;

/// The provider's price per token, in wei.
pub const GWEI_PRICE: u64 = 1_000;

/// A local chain with both contracts and the provider's service registered (owner-acknowledged) at
/// the fixture's URL. `user` and `user2` are the customers.
pub struct Env {
    /// The contracts and the dev accounts.
    pub base: contracts::Env,
    /// The provider's byte path.
    pub fixture: FixtureProvider,
}

impl std::ops::Deref for Env {
    type Target = contracts::Env;
    fn deref(&self) -> &contracts::Env {
        &self.base
    }
}

impl Env {
    /// A fresh anvil with the contracts, the fixture and the registered service.
    pub async fn new() -> Self {
        let base = contracts::Env::new().await;
        let fixture = FixtureProvider::start(base.tee.address()).await;
        base.register_provider_as(&Service {
            url: fixture.url.clone(),
            price: U256::from(GWEI_PRICE),
            models: vec!["SmolLM2-135M-Instruct".into()],
            tee: base.tee.address(),
        })
        .await;
        Env { base, fixture }
    }

    /// Before each case of a shared `Env`: the fixture forgets what it recorded and served.
    pub fn reset(&self) {
        self.fixture.reset();
    }

    /// The contract addresses as the client takes them.
    pub fn contracts(&self) -> Contracts {
        Contracts {
            ledger: self.deployment.ledger,
            serving: self.deployment.serving,
        }
    }

    /// The client's chain handle, signing as `who` when given.
    pub fn chain(&self, who: Option<&PrivateKeySigner>) -> Chain {
        Chain::connect(&self.rpc(), self.contracts(), who.cloned()).expect("connect")
    }

    /// The customer library, signing as `who`.
    pub fn client(&self, who: &PrivateKeySigner) -> Client {
        Client::new(self.chain(Some(who))).expect("client")
    }

    /// A nonce-safe alloy provider signing as `who`.
    pub fn wallet(&self, who: &PrivateKeySigner) -> DynProvider {
        self.base.client(who)
    }

    /// As the provider: announce a deliverable for `user`.
    pub async fn deliver(&self, user: Address, id: &str, root: &[u8]) {
        self.add_deliverable_with_root(user, id, root)
            .await
            .expect("addDeliverable");
    }

    /// As the provider: settle `id` with the TEE signature made by `sealtune_protocol::eip712` (the
    /// worker's job, done by hand here).
    pub async fn settle_signed(
        &self,
        user: Address,
        id: &str,
        root: &[u8],
        secret: &[u8],
        nonce: U256,
        fee: U256,
    ) {
        let message = sealtune_protocol::eip712::VerifierMessage {
            id: id.into(),
            encryptedSecret: Bytes::copy_from_slice(secret),
            modelRootHash: Bytes::copy_from_slice(root),
            nonce,
            taskFee: fee,
            user,
        };
        self.settle_message(self.tee.credential(), &message)
            .await
            .expect("settleFees");
    }

    /// How many transactions `who` has sent.
    pub async fn tx_count(&self, who: Address) -> u64 {
        self.anvil
            .reader()
            .get_transaction_count(who)
            .await
            .unwrap()
    }
}
