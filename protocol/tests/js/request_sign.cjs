// Signs every customer request kind exactly as the official 0G SDK (@0gfoundation/0g-compute-ts-sdk 0.9.0)
// does, and the settlement VerifierMessage with ethers' EIP-712 encoder, for deterministic pseudo-random
// keys and inputs. Prints one JSON document of test vectors on stdout.
//
//   NODE_PATH=<repo>/node_modules node request_sign.cjs <seed: 64 hex digits> <cases per kind>
//
// The create-task, cancel and dataset-upload signatures come from the SDK's own exported helpers
// (lib.commonjs/common/utils/encrypt.js). The LoRA-download signature is built inline by the SDK
// (`downloadLoRAFromTEE`), so it is rebuilt here with the same ethers calls. The fee-bound create-task
// form is sealtune's and is signed the way the SDK signs the plain one.
'use strict';

const path = require('path');
const { ethers } = require('ethers');

const sdkMain = require.resolve('@0gfoundation/0g-compute-ts-sdk');
const sdkVersion = require(path.join(path.dirname(sdkMain), '..', 'package.json')).version;
// The package's `exports` hide this file; an absolute path reaches it.
const sdk = require(path.join(path.dirname(sdkMain), 'common', 'utils', 'encrypt.js'));

const seed = process.argv[2];
const count = Number(process.argv[3] || '8');
if (!/^[0-9a-fA-F]{64}$/.test(seed || '') || !(count >= 1)) {
  console.error('usage: request_sign.cjs <seed: 64 hex digits> <cases per kind>');
  process.exit(2);
}

// Deterministic bytes: keccak256(seed ‖ utf8(label)).
function rand(label) {
  return ethers.getBytes(ethers.keccak256(ethers.concat(['0x' + seed, ethers.toUtf8Bytes(label)])));
}
function randHex(label, n) {
  return ethers.hexlify(rand(label).slice(0, n));
}
function randInt(label, max) {
  return Number(BigInt(ethers.hexlify(rand(label))) % BigInt(max));
}
function wallet(label) {
  return new ethers.Wallet(ethers.hexlify(rand('key:' + label)));
}
// A version-4 UUID string from deterministic bytes (what the provider assigns).
function uuid(label) {
  const b = rand('uuid:' + label).slice(0, 16);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = ethers.hexlify(b).slice(2);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
const leadingZero = (digest) => digest.startsWith('0x00');

function keyFields(w) {
  return { private_key: w.privateKey, address: w.address, public_key: w.signingKey.publicKey };
}

async function createTask(i) {
  const w = wallet('create:' + i);
  const datasetHash = randHex('dataset:' + i, 32);
  const withFee = i % 2 === 1;
  const fee = withFee && i % 4 === 3 ? 0n : BigInt(randHex('fee:' + i, 12));
  // Even cases: the SDK's own nonce recipe (Date.now() * 10000 + 40, a float above 2^53);
  // odd cases: a full-width uint256.
  let nonceFor = (k) => {
    if (i % 2 === 0) {
      const n = (1_700_000_000_000 + randInt('ms:' + i, 100_000_000_000) + k) * 10000 + 40;
      return BigInt(n);
    }
    return BigInt(randHex('nonce:' + i + ':' + k, 32));
  };
  const digestFor = (nonce) =>
    withFee
      ? ethers.solidityPackedKeccak256(['address', 'uint256', 'string', 'uint256'], [w.address, nonce, datasetHash, fee])
      : ethers.solidityPackedKeccak256(['address', 'uint256', 'string'], [w.address, nonce, datasetHash]);
  // Every fourth case is ground until its digest starts with 0x00 (the SDK then signs 31 bytes).
  let k = 0;
  let nonce = nonceFor(k);
  while (i % 4 === 0 && !leadingZero(digestFor(nonce))) nonce = nonceFor(++k);
  const digest = digestFor(nonce);
  const signature = withFee
    ? await w.signMessage(ethers.toBeArray(digest))
    : await sdk.signRequest(w, w.address, nonce, datasetHash);
  return {
    ...keyFields(w),
    user_address: w.address,
    nonce: nonce.toString(),
    dataset_hash: datasetHash,
    fee: fee.toString(),
    with_fee: withFee,
    digest,
    signature,
  };
}

async function cancel(i) {
  const w = wallet('cancel:' + i);
  let k = 0;
  let id = uuid('cancel:' + i + ':' + k);
  const digestFor = (t) => ethers.solidityPackedKeccak256(['bytes'], ['0x' + t.replace(/-/g, '')]);
  while (i % 4 === 0 && !leadingZero(digestFor(id))) id = uuid('cancel:' + i + ':' + ++k);
  return { ...keyFields(w), task_id: id, digest: digestFor(id), signature: await sdk.signTaskID(w, id) };
}

async function lora(i) {
  const w = wallet('lora:' + i);
  const id = uuid('lora:' + i);
  const taskIdBytes = '0x' + id.replace(/-/g, '');
  let timestamp = 1_700_000_000 + randInt('ts:' + i, 100_000_000);
  const digestFor = (ts) => ethers.keccak256(ethers.toUtf8Bytes(`${taskIdBytes.slice(2)}${ts}`));
  while (i % 4 === 0 && !leadingZero(digestFor(timestamp))) timestamp += 1;
  const digest = digestFor(timestamp);
  const signature = await w.signMessage(ethers.toBeArray(digest));
  return { ...keyFields(w), task_id: id, timestamp, digest, signature };
}

async function datasetUpload(i) {
  const w = wallet('dataset:' + i);
  // The SDK uses its checksummed address; a lowercase URL exercises "the address as in the URL".
  const userInUrl = i % 3 === 2 ? w.address.toLowerCase() : w.address;
  let timestamp = 1_700_000_000 + randInt('ts-up:' + i, 100_000_000);
  const digestFor = (ts) => ethers.keccak256(ethers.toUtf8Bytes(`${userInUrl}${ts}`));
  while (i % 4 === 0 && !leadingZero(digestFor(timestamp))) timestamp += 1;
  return {
    ...keyFields(w),
    user_in_url: userInUrl,
    timestamp,
    digest: digestFor(timestamp),
    signature: await sdk.signDatasetUpload(w, userInUrl, timestamp),
  };
}

const VERIFIER_TYPES = {
  VerifierMessage: [
    { name: 'id', type: 'string' },
    { name: 'encryptedSecret', type: 'bytes' },
    { name: 'modelRootHash', type: 'bytes' },
    { name: 'nonce', type: 'uint256' },
    { name: 'taskFee', type: 'uint256' },
    { name: 'user', type: 'address' },
  ],
};

async function verifierMessage(i) {
  const w = wallet('tee:' + i);
  const domain = {
    name: '0G Fine-Tuning Serving',
    version: '1',
    chainId: [16602, 16661, 31337, 1][i % 4],
    verifyingContract: ethers.getAddress(randHex('contract:' + i, 20)),
  };
  const value = {
    id: uuid('deliverable:' + i),
    // acknowledged deliverables carry the 129-byte ECIES secret; unacknowledged ones settle with none
    encryptedSecret: i % 3 === 2 ? '0x' : randHex('secret:' + i, 32) + randHex('secret2:' + i, 32).slice(2) +
      randHex('secret3:' + i, 32).slice(2) + randHex('secret4:' + i, 32).slice(2) + randHex('secret5:' + i, 1).slice(2),
    modelRootHash: randHex('root:' + i, 32),
    nonce: BigInt(randHex('vnonce:' + i, i % 2 ? 32 : 8)).toString(),
    taskFee: BigInt(randHex('vfee:' + i, 10)).toString(),
    user: ethers.getAddress(randHex('user:' + i, 20)),
  };
  return {
    ...keyFields(w),
    chain_id: domain.chainId,
    verifying_contract: domain.verifyingContract,
    ...value,
    domain_separator: ethers.TypedDataEncoder.hashDomain(domain),
    digest: ethers.TypedDataEncoder.hash(domain, VERIFIER_TYPES, value),
    signature: await w.signTypedData(domain, VERIFIER_TYPES, value),
  };
}

async function main() {
  const out = {
    generator: 'protocol/tests/js/request_sign.cjs',
    sdk_version: sdkVersion,
    ethers_version: ethers.version,
    seed,
    create_task: [],
    cancel: [],
    lora_download: [],
    dataset_upload: [],
    verifier_message: [],
  };
  for (let i = 0; i < count; i++) {
    out.create_task.push(await createTask(i));
    out.cancel.push(await cancel(i));
    out.lora_download.push(await lora(i));
    out.dataset_upload.push(await datasetUpload(i));
    out.verifier_message.push(await verifierMessage(i));
  }
  process.stdout.write(JSON.stringify(out, null, 1) + '\n');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
