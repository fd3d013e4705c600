//! Sans-IO protocol cores. See the crate description.
//!
//! * [`relay`]: autonomic two-hop relay selection (paper section IV-D).
//! * [`sim`]: the overlay model and latency-matrix loader that
//!   `cargo xtask sim relays` drives (paper section V-A, Fig. 5).
//! * [`session`]: session keys (ephemeral X25519 over the authenticated
//!   overlay stream, HKDF, rekey with a grace window, removal).

pub mod addr;
pub mod relay;
pub mod session;
pub mod sim;
