// Open every sealed deliverable vector (`sealed_*.json`, `fail_sealed_*.json`) with the official 0G SDK's
// code, independently of sealtune's Rust opener.
//
// * Wire-size vectors (64 MiB chunks) go through the SDK's own `aesGCMDecryptToFile`, exactly what the
//   official client's decryptModel runs.
// * The SDK's chunk length is a module constant (64 MiB + 16), so vectors sealed in smaller chunks go
//   through `openChunked` below: the same loop as `aesGCMDecryptToFile` (signature ‖ IV ‖ chunks, each
//   chunk's tag at its end, IV incremented big-endian per chunk, the signature over keccak256 of the
//   concatenated tags recovered with ethers) with the chunk length as a parameter, decrypting through the
//   SDK's own crypto adapter.
// Each plaintext zip is then read with adm-zip (what the official CLI extracts with).
//
// usage: node deliverable_vectors_open.cjs <vectorsDir> <workDir>
// Prints one JSON line per vector: {"name", "opener", "ok": true, "zip": hex, "entries": {name: hex}}
// or {"name", "opener", "ok": false, "error": "..."}.
'use strict';
const fs = require('fs');
const path = require('path');
const modules = process.env.NODE_PATH;
if (!modules) {
  console.error('NODE_PATH must point at the repository node_modules (run scripts/setup)');
  process.exit(2);
}
const utils = path.join(modules, '@0gfoundation/0g-compute-ts-sdk/lib.commonjs/common/utils');
const sdk = require(path.join(utils, 'encrypt.js'));
const { getCryptoAdapter } = require(path.join(utils, 'crypto-adapter.js'));
const { ethers } = require('ethers');
const AdmZip = require('adm-zip');

const SIG_LEN = 65;
const IV_LEN = 12;
const TAG_LEN = 16;
const WIRE_CHUNK_LEN = 64 * 1024 * 1024;

async function openChunked(keyHex, sealed, signer, chunkLen) {
  const key = Buffer.from(keyHex, 'hex');
  const tagSig = sealed.subarray(0, SIG_LEN);
  const iv = Buffer.from(sealed.subarray(SIG_LEN, SIG_LEN + IV_LEN));
  const adapter = getCryptoAdapter();
  const parts = [];
  const tags = [];
  for (let off = SIG_LEN + IV_LEN; off < sealed.length; off += chunkLen + TAG_LEN) {
    const chunk = sealed.subarray(off, Math.min(off + chunkLen + TAG_LEN, sealed.length));
    const tag = chunk.subarray(chunk.length - TAG_LEN);
    const body = chunk.subarray(0, chunk.length - TAG_LEN);
    parts.push(await adapter.aesGCMDecrypt(key, Buffer.from(body), Buffer.from(iv), Buffer.from(tag)));
    tags.push(Buffer.from(tag));
    for (let i = iv.length - 1; i >= 0; i--) {
      iv[i]++;
      if (iv[i] !== 0) break;
    }
  }
  const recovered = ethers.recoverAddress(ethers.keccak256(Buffer.concat(tags)), '0x' + tagSig.toString('hex'));
  if (recovered.toLowerCase() !== signer.toLowerCase()) {
    throw new Error('Invalid tag signature');
  }
  return Buffer.concat(parts);
}

async function openVector(v, encPath, zipPath) {
  const sealed = Buffer.from(v.sealed, 'hex');
  if (v.chunk_len === WIRE_CHUNK_LEN) {
    fs.writeFileSync(encPath, sealed);
    await sdk.aesGCMDecryptToFile(v.key, encPath, zipPath, v.tee_signer);
    return { opener: 'sdk.aesGCMDecryptToFile', zip: fs.readFileSync(zipPath) };
  }
  return { opener: 'sdk-loop', zip: await openChunked(v.key, sealed, v.tee_signer, v.chunk_len) };
}

async function main() {
  const [dir, work] = process.argv.slice(2);
  const names = fs
    .readdirSync(dir)
    .filter((n) => /^(fail_)?sealed_.*\.json$/.test(n))
    .sort();
  for (const name of names) {
    const v = JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8'));
    const opener = v.chunk_len === WIRE_CHUNK_LEN ? 'sdk.aesGCMDecryptToFile' : 'sdk-loop';
    try {
      const base = path.join(work, name.replace(/\.json$/, ''));
      const opened = await openVector(v, base + '.enc', base + '.zip');
      const entries = {};
      for (const e of new AdmZip(opened.zip).getEntries()) {
        if (!e.isDirectory) entries[e.entryName] = e.getData().toString('hex');
      }
      console.log(JSON.stringify({ name, opener: opened.opener, ok: true, zip: opened.zip.toString('hex'), entries }));
    } catch (e) {
      console.log(JSON.stringify({ name, opener, ok: false, error: String(e && e.message ? e.message : e) }));
    }
  }
}

main().catch((e) => {
  console.error(String(e && e.stack ? e.stack : e));
  process.exit(1);
});
