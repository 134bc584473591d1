// Open a sealed deliverable with the official 0G SDK's aesGCMDecryptToFile and unzip it with adm-zip,
// exactly as the official client's decryptModel + CLI do.
// usage: node deliverable_open.cjs <encrypted> <zipOut> <keyHex> <teeSignerAddress> <extractDir>
// Prints {"ok":true,"entries":[...]} or exits 1 with {"ok":false,"error":"..."}.
'use strict';
const path = require('path');
const modules = process.env.NODE_PATH;
if (!modules) {
  console.error('NODE_PATH must point at the repository node_modules (run scripts/setup)');
  process.exit(2);
}
const sdk = require(path.join(modules, '@0gfoundation/0g-compute-ts-sdk/lib.commonjs/common/utils/encrypt.js'));
const AdmZip = require('adm-zip');

async function main() {
  const [enc, zipOut, keyHex, signer, extractDir] = process.argv.slice(2);
  await sdk.aesGCMDecryptToFile(keyHex, enc, zipOut, signer);
  const zip = new AdmZip(zipOut);
  zip.extractAllTo(extractDir, true);
  const entries = zip.getEntries().map((e) => e.entryName);
  console.log(JSON.stringify({ ok: true, entries }));
}

main().catch((e) => {
  console.log(JSON.stringify({ ok: false, error: String(e && e.message ? e.message : e) }));
  process.exit(1);
});
