//! A local chain: anvil on a free loopback port (the one launcher of the project's tests), anvil's
//! dev accounts, and the nonce-safe provider every test signs with.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder, WalletProvider};
use alloy::signers::local::PrivateKeySigner;

use crate::process::{ChildGuard, spawn_tied};
use crate::tools::{free_port, node_tool};

/// The chain id anvil runs with unless told otherwise (the official SDK knows it as the local chain).
pub const DEV_CHAIN_ID: u64 = 31337;

/// anvil's dev keys (mnemonic "test test … junk"), each funded with 10,000 ether at start. By
/// convention 0 owns the contracts, 1 is the provider (the worker), 2 and 3 are customers.
pub const DEV_KEYS: [&str; 10] = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
];

/// Dev account `i` as an alloy signer.
pub fn signer(i: usize) -> PrivateKeySigner {
    DEV_KEYS[i]
        .parse()
        .unwrap_or_else(|e| panic!("dev key {i}: {e}"))
}

/// Dev account `i` as a k256 signing key (what `sealtune_protocol` signs with).
pub fn k256_key(i: usize) -> k256::ecdsa::SigningKey {
    let bytes = hex::decode(&DEV_KEYS[i][2..]).unwrap_or_else(|e| panic!("dev key {i}: {e}"));
    k256::ecdsa::SigningKey::from_slice(&bytes).unwrap_or_else(|e| panic!("dev key {i}: {e}"))
}

/// `n` ether in wei.
pub fn ether(n: u64) -> U256 {
    U256::from(n) * U256::from(10u64).pow(U256::from(18u64))
}

/// A provider that signs as `who`, with its nonce fetched for each transaction: alloy's recommended
/// (cached) nonce manager leaves a gap after a transaction whose gas estimation reverted, and the next
/// one then waits forever in anvil's queue. Every test signs through this one builder.
pub fn wallet(endpoint: &str, who: &PrivateKeySigner) -> DynProvider {
    signing(endpoint, who).erased()
}

/// [`wallet`] before type erasure, for what needs to know the signer too (`sealtune_contracts::deploy`).
pub fn signing(
    endpoint: &str,
    who: &PrivateKeySigner,
) -> impl Provider + WalletProvider + Clone + use<> {
    ProviderBuilder::new()
        .disable_recommended_fillers()
        .with_gas_estimation()
        .with_simple_nonce_management()
        .fetch_chain_id()
        .wallet(who.clone())
        .connect_client(rpc_client(endpoint))
}

/// How often a provider polls anvil for new blocks (a receipt is seen at the next poll). alloy polls a
/// local node every 250 ms; anvil mines each transaction at once, so the tests poll more often.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

fn rpc_client(endpoint: &str) -> alloy::rpc::client::RpcClient {
    let url = endpoint
        .parse()
        .unwrap_or_else(|e| panic!("endpoint {endpoint}: {e}"));
    alloy::rpc::client::RpcClient::new_http(url).with_poll_interval(POLL_INTERVAL)
}

/// A read-only provider (no signer).
pub fn reader(endpoint: &str) -> DynProvider {
    ProviderBuilder::new()
        .connect_client(rpc_client(endpoint))
        .erased()
}

/// A local anvil chain on loopback, stopped on drop (and when the test binary dies, see
/// [`crate::process`]).
pub struct Anvil {
    _child: ChildGuard,
    /// The JSON-RPC endpoint, `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// The chain id it runs with.
    pub chain_id: u64,
}

impl Anvil {
    /// Start anvil with the given chain id and wait until it accepts connections (at most 10 s).
    pub fn start(chain_id: u64) -> Anvil {
        let port = free_port();
        let mut cmd = Command::new(node_tool("anvil"));
        cmd.args([
            "--silent",
            "--port",
            &port.to_string(),
            "--chain-id",
            &chain_id.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
        let child = spawn_tied(cmd).unwrap_or_else(|e| panic!("cannot start anvil: {e}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "anvil did not listen on port {port} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Anvil {
            _child: child,
            endpoint: format!("http://127.0.0.1:{port}"),
            chain_id,
        }
    }

    /// Start anvil with [`DEV_CHAIN_ID`].
    pub fn dev() -> Anvil {
        Anvil::start(DEV_CHAIN_ID)
    }

    /// A nonce-safe provider signing as `who` (see [`wallet`]).
    pub fn wallet(&self, who: &PrivateKeySigner) -> DynProvider {
        wallet(&self.endpoint, who)
    }

    /// A nonce-safe provider signing as `who`, not type-erased (see [`signing`]).
    pub fn signing(
        &self,
        who: &PrivateKeySigner,
    ) -> impl Provider + WalletProvider + Clone + use<> {
        signing(&self.endpoint, who)
    }

    /// A read-only provider.
    pub fn reader(&self) -> DynProvider {
        reader(&self.endpoint)
    }

    /// An anvil/EVM JSON-RPC call (`params`: a JSON array) whose answer the caller does not need.
    pub async fn rpc(&self, method: &'static str, params: serde_json::Value) {
        let _: serde_json::Value = self
            .reader()
            .raw_request(method.into(), params)
            .await
            .unwrap_or_else(|e| panic!("{method}: {e}"));
    }

    /// Moves the chain's clock forward by `secs` and mines a block at the new time.
    pub async fn increase_time(&self, secs: u64) {
        self.rpc("evm_increaseTime", serde_json::json!([secs]))
            .await;
        self.rpc("evm_mine", serde_json::json!([])).await;
    }

    /// Sets an account's nonce (e.g. to land contracts at known addresses).
    pub async fn set_nonce(&self, who: Address, nonce: u64) {
        self.rpc(
            "anvil_setNonce",
            serde_json::json!([who, U256::from(nonce)]),
        )
        .await;
    }

    /// Takes a snapshot of the whole chain state; [`Anvil::revert`] returns to it.
    pub async fn snapshot(&self) -> U256 {
        self.reader()
            .raw_request("evm_snapshot".into(), ())
            .await
            .unwrap_or_else(|e| panic!("evm_snapshot: {e}"))
    }

    /// Returns the chain to the state of snapshot `id` (which is used up, as are later ones).
    pub async fn revert(&self, id: U256) {
        let ok: bool = self
            .reader()
            .raw_request("evm_revert".into(), (id,))
            .await
            .unwrap_or_else(|e| panic!("evm_revert: {e}"));
        assert!(ok, "evm_revert({id}) found no such snapshot");
    }

    /// The ether balance of `who`.
    pub async fn balance(&self, who: Address) -> U256 {
        self.reader()
            .get_balance(who)
            .await
            .unwrap_or_else(|e| panic!("balance of {who}: {e}"))
    }
}
