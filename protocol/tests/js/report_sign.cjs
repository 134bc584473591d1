// Signs a sealtune training report (docs/PROTOCOL.md §8) with ethers 6's EIP-712 encoder, independently of
// the Rust code: reads {chain_id, serving, private_key, document} as JSON on stdin and prints the vector
// {…input, report_hash, digest, signature, signer} on stdout.
//
//   NODE_PATH=<repo>/node_modules node report_sign.cjs < input.json
'use strict';

const { ethers } = require('ethers');

const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const doc = JSON.parse(input.document);
const domain = {
  name: '0G Fine-Tuning Serving',
  version: '1',
  chainId: input.chain_id,
  verifyingContract: input.serving,
};
const types = {
  TrainingReport: [
    { name: 'taskId', type: 'string' },
    { name: 'user', type: 'address' },
    { name: 'modelRootHash', type: 'bytes' },
    { name: 'reportHash', type: 'bytes32' },
  ],
};
const reportHash = ethers.keccak256(ethers.toUtf8Bytes(input.document));
const message = { taskId: doc.task_id, user: doc.user, modelRootHash: doc.model_root_hash, reportHash };
const digest = ethers.TypedDataEncoder.hash(domain, types, message);
const wallet = new ethers.Wallet(input.private_key);
const signature = wallet.signingKey.sign(digest).serialized;
console.log(JSON.stringify({ ...input, report_hash: reportHash, digest, signature, signer: wallet.address }, null, 2));
