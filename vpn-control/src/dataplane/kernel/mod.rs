//! The kernel (eBPF) data plane: loads and attaches the programs, reconciles the maps.
