//! Attestation and the TEE signer: quote sources (configfs-tsm, the dstack guest agent, legacy tappd,
//! and the insecure `dev` source), the stable TEE signing key, and the `/v1/quote` body (PROTOCOL.md §5).
