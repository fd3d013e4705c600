//! Test harness for GroupVPN's network-namespace tests, the demo and the
//! benchmarks: uniquely named network namespaces removed on drop, a LAN of
//! hosts on one bridge, lab configurations with matching keys, overlay labs
//! (a group CA and certificates made with the CLI, `vpn-control dht-node`s,
//! members with `[overlay]` configurations), `vpn-control` processes that
//! are stopped on drop, and wrappers around `ping`, `iperf3` and `tcpdump`.
//!
//! Everything here stays inside namespaces that it created: the underlay
//! addresses (`192.168.77.0/24`) and VPN addresses (`10.77.0.0/24`,
//! `fd77::/64`) exist only inside them. Nothing touches the host's own
//! interfaces or routes.
//!
//! This library is also a dependency of `xtask` (the demo), so it must stay
//! light: it may not depend on `vpn-control` or anything that needs the eBPF
//! toolchain (that would break `cargo xtask setup` on a fresh machine).

mod cleanup;
mod config;
mod env;
mod error;
mod inspect;
mod lab;
mod lan;
mod netns;
mod overlay;
mod pcap;
mod process;
mod scenario;
pub mod server;
mod status;
mod tools;
mod wait;

pub use cleanup::{clean_namespaces, CleanReport, CleanScope};
pub use config::{generate_lab_configs, lab_index, Dataplane, NodeSpec, LAB_PORT};
pub use env::{is_root, require_root, vpn_control_bin, TempDir};
pub use error::{Error, Result};
pub use inspect::{
    attached_program_ids, daemon_programs, ifindex, loaded_programs, map_entries, process_bpf,
    process_map_by_name, process_maps, still_linked, still_loaded, tx_session_indices, BpfLink,
    BpfProg, NetState,
};
pub use lab::UP_TIMEOUT;
pub use lab::{Lab, VpnNode};
pub use lan::{Host, Lan};
pub use netns::{Netns, NsRef, NETNS_PREFIX};
pub use overlay::{
    credentials_from_cli, identity_peer_id, render_overlay_config, DhtNode, GroupCredentials,
    GroupSpec, MemberAddress, MemberCredentials, MemberRequest, OverlayConfigSpec, OverlayLab,
    OverlayOptions, OVERLAY_PORT,
};
pub use pcap::read_pcap;
pub use process::Background;
pub use scenario::{
    iperf_between, marker_check, ping_both_ways, udp_bind, udp_send, vpn_addr, MarkerOutcome,
};
pub use status::{OverlayStatus, PeerStatus, Status, INTEGRITY_COUNTERS};
pub use tools::{
    count_containing, iperf3_tcp, ping, ping_once, wait_ping, Capture, IperfClient, IperfReport,
    IperfResult, IperfServer, PingStats,
};
pub use wait::{wait_until, wait_until_ok};
