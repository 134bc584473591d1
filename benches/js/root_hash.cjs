// The official 0G Storage SDK's root hash of one file, timed in-process (excludes node start-up).
// Usage: NODE_PATH=<repo>/node_modules node benches/js/root_hash.cjs FILE
// Prints {"root": "0x…", "ms": <milliseconds for ZgFile.fromFilePath → merkleTree → rootHash>}.
'use strict';
const { ZgFile } = require('@0gfoundation/0g-ts-sdk');

async function main() {
  const start = process.hrtime.bigint();
  const file = await ZgFile.fromFilePath(process.argv[2]);
  const [tree, err] = await file.merkleTree();
  if (err !== null) throw err;
  const root = tree.rootHash();
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  await file.close();
  process.stdout.write(JSON.stringify({ root, ms }));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
