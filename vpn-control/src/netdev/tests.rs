use super::fake::FakeNet;
use super::*;
use crate::config::values::parse_prefix;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn addr(s: &str) -> InterfaceAddress {
    s.parse().unwrap()
}

fn spec_veth() -> NetSpec {
    let addresses = vec![addr("10.77.0.1/24"), addr("fd77::1/64")];
    let allowed = vec![
        parse_prefix("10.77.0.2/32").unwrap(),
        parse_prefix("fd77::2/128").unwrap(),
        parse_prefix("10.99.0.0/16").unwrap(),
    ];
    NetSpec {
        name: "vpn0".into(),
        device: DeviceSpec::Veth {
            peer: "vpn0p".into(),
        },
        routes: routes_needed(&addresses, &allowed),
        addresses,
        mtu: 1440,
    }
}

#[test]
fn routes_only_for_prefixes_outside_connected_ones() {
    let s = spec_veth();
    assert_eq!(s.routes, vec![parse_prefix("10.99.0.0/16").unwrap()]);
    let r = routes_needed(
        &[addr("10.0.0.1/32")],
        &[
            parse_prefix("10.0.0.0/24").unwrap(),
            parse_prefix("10.0.0.0/24").unwrap(),
        ],
    );
    assert_eq!(r.len(), 1);
}

#[test]
fn veth_from_scratch_then_idempotent() {
    let n = FakeNet::new();
    let h = block_on(ensure(&n, &spec_veth())).unwrap();
    let vpn0 = n.link_named("vpn0").unwrap();
    let vpn0p = n.link_named("vpn0p").unwrap();
    assert_eq!(h.ifindex, vpn0.state.index);
    assert_eq!(h.peer_ifindex, Some(vpn0p.state.index));
    assert_eq!(h.mac, vpn0.state.mac);
    assert_eq!(
        (vpn0.state.mtu, vpn0.state.up, vpn0.state.noarp),
        (1440, true, true)
    );
    assert_eq!((vpn0p.state.mtu, vpn0p.state.up), (1440, true));
    assert!(vpn0.offloads_off);
    assert!(vpn0.rps && vpn0p.rps, "RPS on both ends of the pair");
    assert_eq!(vpn0.addresses, spec_veth().addresses);
    assert!(vpn0p.addresses.is_empty());
    assert_eq!(vpn0.routes, vec![parse_prefix("10.99.0.0/16").unwrap()]);
    assert_eq!(
        n.sysctl_value("ipv6/conf/vpn0p/disable_ipv6").as_deref(),
        Some("1")
    );
    let log = n.take_log();
    // IPv6 is disabled on the wire end before it comes up.
    let dis = log
        .iter()
        .position(|l| l.contains("vpn0p/disable_ipv6"))
        .unwrap();
    let up = log
        .iter()
        .position(|l| l.starts_with("set_link vpn0p"))
        .unwrap();
    assert!(dis < up, "{log:?}");
    assert_eq!(log[0], "add_veth vpn0 vpn0p");

    // Second run: nothing to do.
    let h2 = block_on(ensure(&n, &spec_veth())).unwrap();
    assert_eq!(h2, h);
    assert_eq!(n.take_log(), Vec::<String>::new());
}

#[test]
fn drift_is_repaired_minimally() {
    let n = FakeNet::new();
    block_on(ensure(&n, &spec_veth())).unwrap();
    n.take_log();
    n.tamper("vpn0", |l| {
        l.state.mtu = 1500;
        l.addresses.retain(|a| a.addr.is_ipv4());
        l.addresses.push(addr("192.0.2.1/24"));
        l.addresses.push(addr("fe80::1/64"));
        l.routes.push(parse_prefix("10.55.0.0/16").unwrap());
    });
    block_on(ensure(&n, &spec_veth())).unwrap();
    let log = n.take_log();
    assert_eq!(
        log,
        vec![
            "set_link vpn0 mtu=1440 up=true noarp=true",
            "del_address vpn0 192.0.2.1/24",
            "add_address vpn0 fd77::1/64",
            "del_route vpn0 10.55.0.0/16",
        ]
    );
    // The link-local address was left alone.
    assert!(n
        .link_named("vpn0")
        .unwrap()
        .addresses
        .contains(&addr("fe80::1/64")));
}

#[test]
fn half_pair_or_wrong_kind_is_recreated() {
    let n = FakeNet::new();
    n.add_other("vpn0", 1500);
    block_on(ensure(&n, &spec_veth())).unwrap();
    assert_eq!(n.link_named("vpn0").unwrap().state.kind, LinkKind::Veth);
    let log = n.take_log();
    assert_eq!(&log[..2], &["delete_link vpn0", "add_veth vpn0 vpn0p"]);
}

#[test]
fn changed_spec_changes_only_that() {
    let n = FakeNet::new();
    block_on(ensure(&n, &spec_veth())).unwrap();
    n.take_log();
    let mut s = spec_veth();
    s.routes = vec![parse_prefix("10.98.0.0/16").unwrap()];
    s.addresses.pop();
    block_on(ensure(&n, &s)).unwrap();
    assert_eq!(
        n.take_log(),
        vec![
            "del_address vpn0 fd77::1/64",
            "del_route vpn0 10.99.0.0/16",
            "add_route vpn0 10.98.0.0/16",
        ]
    );
}

#[test]
fn tun_must_exist_and_be_tun() {
    let n = FakeNet::new();
    let mut s = spec_veth();
    s.device = DeviceSpec::Tun;
    assert!(block_on(ensure(&n, &s)).is_err());
    n.add_tun("vpn0");
    let h = block_on(ensure(&n, &s)).unwrap();
    assert_eq!(h.peer_ifindex, None);
    let l = n.link_named("vpn0").unwrap();
    assert_eq!((l.state.mtu, l.state.up), (1440, true));
    assert_eq!(l.addresses.len(), 2);
    assert!(!l.offloads_off);
    assert!(!l.rps);
    assert!(n.link_named("vpn0p").is_none());
}

#[test]
fn remove_deletes_what_exists() {
    let n = FakeNet::new();
    block_on(ensure(&n, &spec_veth())).unwrap();
    let removed = block_on(remove(&n, &["vpn0", "vpn0p"])).unwrap();
    assert_eq!(removed, vec!["vpn0".to_string()]);
    assert!(n.link_named("vpn0").is_none() && n.link_named("vpn0p").is_none());
    assert!(block_on(remove(&n, &["vpn0", "vpn0p"])).unwrap().is_empty());
}
