//! GroupVPN node daemon library: configuration, OS network setup, the data
//! planes (kernel eBPF and userspace twin), the control socket.
pub mod config;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod enroll;
pub mod netdev;
pub mod overlay;
pub mod pki_cli;
