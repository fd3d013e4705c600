//! Allocator tests against an in-memory DHT model.
