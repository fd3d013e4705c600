//! Simulation of relay selection over a Kademlia overlay and a latency
//! matrix (the model behind `cargo xtask sim relays`; see `docs/relays.md`).

pub mod matrix;
pub mod overlay;
pub mod relays;
pub mod report;

pub use matrix::{
    load, AsymmetryPolicy, LatencyMatrix, LoadOptions, LoadReport, MatrixError, MissingPolicy, Unit,
};
pub use overlay::{Key, Overlay, OverlayParams};
pub use relays::{run, RelaySimParams, RelaySimReport, SimError, SizeRow, StrategyRow, Variant};
