//! Allocator tests against an in-memory DHT model.

mod churn;
mod faults;
mod harness;
mod lifecycle;
mod races;
