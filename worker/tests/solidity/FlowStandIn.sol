// SPDX-License-Identifier: MIT
// TEST STAND-INS for 0G Storage's Flow and market contracts (the real ones are not on a registry and
// cannot be deployed here). They implement only what a submitter sees: `market()`,
// `pricePerSector()` and the two `submit` ABIs, and they check what the real Flow charges: the value
// must be pricePerSector × Σ 2^height over the submission nodes. Each submission's file root (the
// submission nodes folded from the right, as the node derives it) and length are kept by sequence
// number, which is what the fake storage node (worker/tests/zgs_fake) watches. Used by
// worker/tests/storage_zgs.rs and worker/tests/deliver_zgs.rs.
pragma solidity ^0.8.0;

struct SubmissionNode { bytes32 root; uint256 height; }
struct SubmissionData { uint256 length; bytes tags; SubmissionNode[] nodes; }
struct Submission { SubmissionData data; address submitter; }

contract MarketStandIn {
    uint256 public pricePerSector;
    constructor(uint256 price) { pricePerSector = price; }
}

abstract contract FlowBase {
    address public market;
    uint256 public submissions;
    uint256 public lastLength;
    uint256 public lastNodes;
    address public lastSubmitter;
    bool public lastWasLegacy;
    mapping(uint256 => bytes32) public rootOf;
    mapping(uint256 => uint256) public lengthOf;

    constructor(address m) { market = m; }

    function record(SubmissionData calldata d, address submitter, bool legacy)
        internal
        returns (uint256, bytes32, uint256, uint256)
    {
        require(d.nodes.length > 0, "no submission nodes");
        uint256 sectors;
        for (uint256 i = 0; i < d.nodes.length; i++) sectors += uint256(1) << d.nodes[i].height;
        require(sectors * 256 >= d.length, "nodes do not cover the length");
        require(msg.value == sectors * MarketStandIn(market).pricePerSector(), "wrong storage fee");
        uint256 seq = submissions;
        submissions = seq + 1;
        lastLength = d.length;
        lastNodes = d.nodes.length;
        lastSubmitter = submitter;
        lastWasLegacy = legacy;
        bytes32 root = d.nodes[d.nodes.length - 1].root;
        for (uint256 i = d.nodes.length - 1; i > 0; i--) {
            root = keccak256(abi.encodePacked(d.nodes[i - 1].root, root));
        }
        rootOf[seq] = root;
        lengthOf[seq] = d.length;
        return (seq, keccak256(abi.encode(d.nodes)), 0, sectors);
    }
}

/// The newer ABI only: `submit(((uint256,bytes,(bytes32,uint256)[]),address))`.
contract FlowWithSubmitterStandIn is FlowBase {
    constructor(address m) FlowBase(m) {}
    function submit(Submission calldata s) external payable returns (uint256, bytes32, uint256, uint256) {
        return record(s.data, s.submitter, false);
    }
}

/// The older ABI only: `submit((uint256,bytes,(bytes32,uint256)[]))`.
contract FlowLegacyStandIn is FlowBase {
    constructor(address m) FlowBase(m) {}
    function submit(SubmissionData calldata d) external payable returns (uint256, bytes32, uint256, uint256) {
        return record(d, msg.sender, true);
    }
}
