use vpn_control::dataplane::kernel::{KernelDataplane, KernelParams};

fn params() -> KernelParams {
    KernelParams {
        underlay_ifindex: 1,
        vpn_ifindex: 1,
        vpn_peer_ifindex: 1,
        vpn_mac: [2, 0, 0, 0, 0, 1],
        local_addr: "192.0.2.1".parse().unwrap(),
        data_port: 51830,
        mtu: 1440,
    }
}

#[test]
fn loads() {
    let dp = KernelDataplane::load_unattached(&params());
    if let Err(e) = &dp {
        eprintln!("{e}");
    }
    dp.unwrap();
}
