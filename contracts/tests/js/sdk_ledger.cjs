// Drives the official 0G SDK's library API (@0gfoundation/0g-compute-ts-sdk) against sealtune's contracts:
// creates a ledger, deposits, transfers to a provider's fine-tuning sub-account, and reads the ledger, the
// account and the service list back. Prints one JSON document; the Rust test compares it with what the
// alloy bindings read.
//
//   NODE_PATH=<repo>/node_modules RPC=... KEY=0x... LEDGER=0x... SERVING=0x... PROVIDER=0x... node sdk_ledger.cjs
//
// The SDK resolves service names with LedgerManager.getServiceInfo(inferenceCA) before anything else and
// fails when no inference contract is registered; sealtune deploys fine-tuning only, so the serving
// contract's address is passed as both (its registry entry answers the lookup).
'use strict';

const { ethers } = require('ethers');
const { createZGComputeNetworkBroker } = require('@0gfoundation/0g-compute-ts-sdk');

async function main() {
  const env = (k) => {
    const v = process.env[k];
    if (!v) throw new Error(`missing env ${k}`);
    return v;
  };
  const provider = new ethers.JsonRpcProvider(env('RPC'));
  const wallet = new ethers.Wallet(env('KEY'), provider);
  const broker = await createZGComputeNetworkBroker(wallet, env('LEDGER'), env('SERVING'), env('SERVING'));
  await broker.ledger.addLedger(3);
  await broker.ledger.depositFund(2);
  await broker.ledger.transferFund(env('PROVIDER'), 'fine-tuning', 1500000000000000000n);
  const ledger = await broker.ledger.getLedger();
  const account = await broker.fineTuning.getAccount(env('PROVIDER'));
  const services = await broker.fineTuning.listService(true);
  const out = {
    ledger: {
      user: ledger.user,
      availableBalance: ledger.availableBalance.toString(),
      totalBalance: ledger.totalBalance.toString(),
    },
    account: {
      user: account.user,
      provider: account.provider,
      nonce: account.nonce.toString(),
      balance: account.balance.toString(),
      pendingRefund: account.pendingRefund.toString(),
      acknowledged: account.acknowledged,
    },
    services: services.map((s) => ({
      provider: s.provider,
      url: s.url,
      pricePerToken: s.pricePerToken.toString(),
      models: Array.from(s.models),
      teeSignerAddress: s.teeSignerAddress,
      teeSignerAcknowledged: s.teeSignerAcknowledged,
    })),
  };
  // The SDK logs to stdout too: the result is the one line after the marker.
  process.stdout.write('\nSDK_RESULT ' + JSON.stringify(out) + '\n');
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e && e.stack ? e.stack : e);
    process.exit(1);
  },
);
