//! In-memory tests of session cores driven against each other.

mod faults;
mod handshake;
mod harness;
mod random;
mod rekey;
