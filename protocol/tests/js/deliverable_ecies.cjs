// The official side of the ECIES key wrap (eciesjs 0.4 defaults, as the 0G SDK uses it).
// usage:
//   node deliverable_ecies.cjs encrypt <receiverPublicKeyHex> <plaintextHex>...  -> one payload hex per line (eciesjs.encrypt)
//   node deliverable_ecies.cjs decrypt <receiverPrivateKeyHex> <payloadHex>...   -> one plaintext hex per line
//                                                                                  (the SDK's eciesDecrypt), or ERR:<message>
'use strict';
const path = require('path');
const modules = process.env.NODE_PATH;
if (!modules) {
  console.error('NODE_PATH must point at the repository node_modules (run scripts/setup)');
  process.exit(2);
}
const eciesjs = require('eciesjs');
const sdk = require(path.join(modules, '@0gfoundation/0g-compute-ts-sdk/lib.commonjs/common/utils/encrypt.js'));

async function main() {
  const [mode, key, ...items] = process.argv.slice(2);
  for (const item of items) {
    if (mode === 'encrypt') {
      console.log(Buffer.from(eciesjs.encrypt(key, Buffer.from(item, 'hex'))).toString('hex'));
    } else if (mode === 'decrypt') {
      try {
        // eciesDecrypt(signer, encryptedSecret) only reads signer.privateKey.
        console.log(await sdk.eciesDecrypt({ privateKey: '0x' + key }, '0x' + item));
      } catch (e) {
        console.log('ERR:' + String(e && e.message ? e.message : e));
      }
    } else {
      throw new Error('unknown mode ' + mode);
    }
  }
}

main().catch((e) => {
  console.error(String(e && e.stack ? e.stack : e));
  process.exit(1);
});
