// Oracle for protocol/tests/storage_js_differential.rs: the official 0G Storage SDK's view of files.
// Usage: NODE_PATH=<repo>/node_modules node storage_root.cjs FILE...
// Prints a JSON array: per file its root (ZgFile -> merkleTree -> rootHash), the Flow submission
// nodes (createSubmission) and the SDK's proof of every leaf of the segment tree (proofAt).
'use strict';
const { ZgFile } = require('@0gfoundation/0g-ts-sdk');

async function describe(path) {
  const file = await ZgFile.fromFilePath(path);
  try {
    const [tree, treeErr] = await file.merkleTree();
    if (treeErr !== null) throw treeErr;
    const [submission, subErr] = await file.createSubmission('0x');
    if (subErr !== null) throw subErr;
    const proofs = tree.leaves.map((_, i) => {
      const proof = tree.proofAt(i);
      return { lemma: proof.lemma, path: proof.path };
    });
    return {
      path,
      size: file.size(),
      root: tree.rootHash(),
      nodes: submission.data.nodes.map((n) => ({ root: n.root, height: Number(n.height) })),
      proofs,
    };
  } finally {
    await file.close();
  }
}

async function main() {
  const out = [];
  for (const path of process.argv.slice(2)) out.push(await describe(path));
  process.stdout.write(JSON.stringify(out));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
