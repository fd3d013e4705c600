//! Allocator tests against an in-memory DHT model.

mod harness;
mod lifecycle;
mod races;
