// Signs a sealtune evaluation report (docs/PROTOCOL.md §10) with ethers 6's EIP-712 encoder, independently of
// the Rust code: reads {chain_id, serving, private_key, document} as JSON on stdin and prints the vector
// {…input, report_hash, digest, signature, signer} on stdout.
//
//   NODE_PATH=<repo>/node_modules node evaluation_sign.cjs < input.json
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
  EvaluationReport: [
    { name: 'taskId', type: 'string' },
    { name: 'user', type: 'address' },
    { name: 'evaluatedTaskId', type: 'string' },
    { name: 'evaluatedRootHash', type: 'bytes' },
    { name: 'reportHash', type: 'bytes32' },
  ],
};
const reportHash = ethers.keccak256(ethers.toUtf8Bytes(input.document));
const message = {
  taskId: doc.task_id,
  user: doc.user,
  evaluatedTaskId: doc.evaluated_task_id,
  evaluatedRootHash: doc.evaluated_root_hash,
  reportHash,
};
const digest = ethers.TypedDataEncoder.hash(domain, types, message);
const wallet = new ethers.Wallet(input.private_key);
const signature = wallet.signingKey.sign(digest).serialized;
console.log(JSON.stringify({ ...input, report_hash: reportHash, digest, signature, signer: wallet.address }, null, 2));
