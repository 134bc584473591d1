#!/usr/bin/env node
// Compiles contracts/sol with the pinned solc-js (from <repo>/node_modules) and writes the
// committed artifacts to contracts/artifacts (or to --out <dir>, used by the freshness test).
// Deterministic: sorted sources, fixed settings, JSON written with sorted-by-construction keys.
'use strict';
const fs = require('fs');
const path = require('path');

const SOLC_VERSION = '0.8.37';
const CONTRACTS = ['FineTuningServing', 'LedgerManager'];
const EIP170_LIMIT = 24576;
const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: 'cancun',
  viaIR: false,
  metadata: { bytecodeHash: 'none' },
  outputSelection: {
    '*': { '*': ['abi', 'evm.bytecode.object', 'evm.bytecode.linkReferences', 'evm.deployedBytecode.object'] },
  },
};

const here = __dirname;
const repo = path.resolve(here, '..');
const solDir = path.join(here, 'sol');
let out = path.join(here, 'artifacts');
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--out') out = path.resolve(argv[++i]);
  else {
    console.error(`usage: node contracts/build.cjs [--out DIR]`);
    process.exit(2);
  }
}

let solc;
try {
  solc = require(path.join(repo, 'node_modules', 'solc'));
} catch (e) {
  console.error(`solc-js not found under ${repo}/node_modules: run scripts/setup first (${e.message})`);
  process.exit(1);
}
const version = solc.version();
if (!version.startsWith(SOLC_VERSION + '+')) {
  console.error(`solc ${version} found, ${SOLC_VERSION} required: run scripts/setup`);
  process.exit(1);
}

function walk(dir) {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .flatMap((e) => (e.isDirectory() ? walk(path.join(dir, e.name)) : e.name.endsWith('.sol') ? [path.join(dir, e.name)] : []));
}
const sources = {};
for (const file of walk(solDir)) {
  sources[path.relative(solDir, file).split(path.sep).join('/')] = { content: fs.readFileSync(file, 'utf8') };
}

const input = { language: 'Solidity', sources, settings: SETTINGS };
const output = JSON.parse(solc.compile(JSON.stringify(input)));
let failed = false;
for (const err of output.errors || []) {
  if (err.severity === 'error') failed = true;
  if (err.severity === 'error' || process.env.SOLC_WARNINGS) console.error(err.formattedMessage);
}
if (failed) process.exit(1);

fs.mkdirSync(out, { recursive: true });
for (const name of CONTRACTS) {
  const unit = Object.keys(output.contracts).find((f) => output.contracts[f][name]);
  if (!unit) {
    console.error(`contract ${name} not found in the compiler output`);
    process.exit(1);
  }
  const c = output.contracts[unit][name];
  const runtimeSize = c.evm.deployedBytecode.object.length / 2;
  if (runtimeSize > EIP170_LIMIT) {
    console.error(`${name}: runtime code is ${runtimeSize} bytes, over the EIP-170 limit of ${EIP170_LIMIT}`);
    process.exit(1);
  }
  const artifact = {
    contractName: name,
    sourceName: unit,
    compiler: { name: 'solc-js', version },
    settings: { optimizer: SETTINGS.optimizer, evmVersion: SETTINGS.evmVersion, viaIR: SETTINGS.viaIR, metadata: SETTINGS.metadata },
    runtimeSize,
    abi: c.abi,
    bytecode: '0x' + c.evm.bytecode.object,
    deployedBytecode: '0x' + c.evm.deployedBytecode.object,
    linkReferences: c.evm.bytecode.linkReferences,
  };
  fs.writeFileSync(path.join(out, `${name}.json`), JSON.stringify(artifact, null, 2) + '\n');
  console.log(`${name}: ${runtimeSize} bytes of runtime code -> ${path.relative(process.cwd(), path.join(out, name + '.json'))}`);
}
