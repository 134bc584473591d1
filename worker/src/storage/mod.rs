//! Where datasets, models and deliverables live: uploads to the TEE (keccak256 id), a local
//! content-addressed directory keyed by the 0G root hash (the default), and the 0G Storage network
//! client (node JSON-RPC + Flow submission).
