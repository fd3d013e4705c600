//! Test harness helpers (network namespaces, processes).
