use super::*;

const GOOD: &str = r#"
[interface]
name = "vpn0"
addresses = ["10.77.0.1/24", "fd77::1/64"]
dataplane = "auto"
listen_port = 51830

[[peer]]
name = "b"
endpoint = "192.168.77.2:51830"
allowed_ips = ["10.77.0.2/32", "fd77::2/128"]
local_index = 1
remote_index = 2
send_key = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
recv_key = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100"

[[peer]]
name = "c"
endpoint = "[fd00::3]:51830"
allowed_ips = ["10.77.0.3/32", "10.99.0.0/16"]
local_index = 3
remote_index = 1
send_key = "2000000000000000000000000000000000000000000000000000000000000000"
recv_key = "3000000000000000000000000000000000000000000000000000000000000000"
"#;

fn err(text: &str) -> ConfigError {
    Config::parse(text).expect_err("config should be rejected")
}

/// Replaces the first occurrence of `from` in GOOD and parses.
fn bad(from: &str, to: &str) -> ConfigError {
    assert!(GOOD.contains(from), "test bug: {from:?} not in GOOD");
    err(&GOOD.replacen(from, to, 1))
}

#[test]
fn good_config() {
    let c = Config::parse(GOOD).unwrap();
    assert_eq!(c.interface.name, "vpn0");
    assert_eq!(c.interface.peer_name(), "vpn0p");
    assert_eq!(c.interface.dataplane, DataplaneMode::Auto);
    assert_eq!(c.interface.listen_port, 51830);
    assert_eq!(c.interface.mtu, None);
    assert_eq!(
        c.interface.control_socket,
        PathBuf::from("/run/groupvpn/vpn0.sock")
    );
    assert_eq!(c.interface.addresses[1].to_string(), "fd77::1/64");
    assert_eq!(c.peers.len(), 2);
    assert_eq!(c.peers[1].endpoint, "[fd00::3]:51830".parse().unwrap());
    assert_eq!(c.peers[0].send_key.0[31], 0x1f);
    assert_eq!(c.peers[1].allowed_ips[1].len, 16);
}

#[test]
fn the_documented_example_parses() {
    let doc = include_str!("../../../docs/config.md");
    let blocks: Vec<&str> = doc
        .split("```toml\n")
        .skip(1)
        .map(|b| &b[..b.find("```").unwrap()])
        .collect();
    assert_eq!(blocks.len(), 2, "the overlay example and the lab example");
    let c = Config::parse(blocks[0]).unwrap();
    assert!(c.peers.is_empty());
    let o = c.overlay.expect("the main example is an overlay config");
    assert_eq!(o.bootstrap.len(), 1);
    assert!(c.interface.addresses.is_empty());
    let lab = Config::parse(blocks[1]).unwrap();
    assert_eq!(lab.peers.len(), 1);
    assert!(lab.overlay.is_none());
}

#[test]
fn defaults_and_minimal() {
    let c = Config::parse("[interface]\nname = \"gv1\"\naddresses = [\"10.1.0.1/24\"]\n").unwrap();
    assert_eq!(c.interface.dataplane, DataplaneMode::Auto);
    assert_eq!(c.interface.listen_port, vpn_common::wire::DEFAULT_DATA_PORT);
    assert!(c.peers.is_empty());
}

#[test]
fn optional_keys() {
    let c = Config::parse(&GOOD.replace(
        "listen_port = 51830\n",
        "listen_port = 4000\nunderlay = \"eth1\"\nmtu = 1400\ncontrol_socket = \"/tmp/x.sock\"\ndataplane = \"userspace\"\n",
    ).replace("dataplane = \"auto\"\n", ""))
    .unwrap();
    assert_eq!(c.interface.listen_port, 4000);
    assert_eq!(c.interface.underlay.as_deref(), Some("eth1"));
    assert_eq!(c.interface.mtu, Some(1400));
    assert_eq!(c.interface.dataplane, DataplaneMode::Userspace);
    assert_eq!(c.interface.control_socket, PathBuf::from("/tmp/x.sock"));
}

#[track_caller]
fn assert_err(e: ConfigError, key: &str, needle: &str) {
    assert_eq!(e.key, key, "wrong key in {e}");
    assert!(
        e.problem.contains(needle),
        "problem of {key} should mention {needle:?}: {e}"
    );
    assert!(e.to_string().starts_with(&format!("{key}: ")));
}

#[test]
fn short_key_names_path_and_length() {
    let e = bad(
        "send_key = \"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\"",
        "send_key = \"0001020304ab\"",
    );
    assert_err(e, "peer[0].send_key", "expected 64 hex digits, got 12");
}

#[test]
fn non_hex_key() {
    let e = bad(
        "recv_key = \"3000000000000000000000000000000000000000000000000000000000000000\"",
        "recv_key = \"300000000000000000000000000000000000000000000000000000000000000g\"",
    );
    assert_err(e, "peer[1].recv_key", "'g'");
}

#[test]
fn unknown_keys() {
    assert_err(
        bad("listen_port", "listen_prot"),
        "interface.listen_prot",
        "unknown field `listen_prot`",
    );
    assert_err(
        bad("name = \"b\"", "name = \"b\"\ncolour = 1"),
        "peer[0].colour",
        "unknown field `colour`",
    );
    assert_err(
        err(&format!("{GOOD}\n[extra]\na = 1\n")),
        "extra",
        "unknown field `extra`",
    );
}

#[test]
fn missing_keys() {
    assert_err(
        bad("name = \"vpn0\"\n", ""),
        "interface",
        "missing field `name`",
    );
    assert_err(
        bad("local_index = 1\n", ""),
        "peer[0]",
        "missing field `local_index`",
    );
    assert_err(err(""), ".", "missing field `interface`");
    assert_err(
        err("[[peer]]\nname = \"x\"\n"),
        "peer[0]",
        "missing field `endpoint`",
    );
}

#[test]
fn wrong_types_and_ranges() {
    assert_err(
        bad("listen_port = 51830", "listen_port = 70000"),
        "interface.listen_port",
        "70000",
    );
    assert_err(
        bad("listen_port = 51830", "listen_port = 0"),
        "interface.listen_port",
        "1..=65535",
    );
    assert_err(
        bad("listen_port = 51830", "listen_port = \"x\""),
        "interface.listen_port",
        "invalid type: string",
    );
    assert_err(
        bad("local_index = 1", "local_index = -1"),
        "peer[0].local_index",
        "-1",
    );
    assert_err(
        bad("local_index = 1", "local_index = 0"),
        "peer[0].local_index",
        "non-zero",
    );
    assert_err(
        bad("remote_index = 2", "remote_index = 0"),
        "peer[0].remote_index",
        "non-zero",
    );
    assert_err(
        bad("dataplane = \"auto\"", "dataplane = \"ebpf\""),
        "interface.dataplane",
        "unknown variant `ebpf`",
    );
    assert_err(
        bad("addresses = [", "addresses = 5 #["),
        "interface.addresses",
        "",
    );
}

#[test]
fn mtu_bounds() {
    let with = |m: &str| {
        bad(
            "listen_port = 51830",
            &format!("listen_port = 51830\nmtu = {m}"),
        )
    };
    assert_err(with("100"), "interface.mtu", "not in 1280..=");
    assert_err(with("1279"), "interface.mtu", "carries IPv6");
    assert_err(with("99999"), "interface.mtu", "not in");
    let v4only = GOOD
        .replace(", \"fd77::1/64\"", "")
        .replace("listen_port = 51830", "listen_port = 51830\nmtu = 600");
    assert_eq!(Config::parse(&v4only).unwrap().interface.mtu, Some(600));
}

#[test]
fn bad_addresses() {
    assert_err(
        bad("10.77.0.1/24", "10.77.0.1"),
        "interface.addresses[0]",
        "ADDRESS/PREFIX_LENGTH",
    );
    assert_err(
        bad("10.77.0.1/24", "10.77.0.300/24"),
        "interface.addresses[0]",
        "not an IPv4 or IPv6",
    );
    assert_err(
        bad("fd77::1/64", "fd77::1/129"),
        "interface.addresses[1]",
        "0..=128",
    );
    assert_err(
        bad("\"fd77::1/64\"", "\"10.77.0.1/16\""),
        "interface.addresses[1]",
        "duplicate",
    );
    assert_err(
        bad(
            "addresses = [\"10.77.0.1/24\", \"fd77::1/64\"]",
            "addresses = []",
        ),
        "interface.addresses",
        "at least one",
    );
    assert_err(
        bad("10.77.0.2/32", "10.77.0.2/24"),
        "peer[0].allowed_ips[0]",
        "host bits",
    );
    assert_err(
        bad("10.77.0.2/32", "10.77.0.1/32"),
        "peer[0].allowed_ips[0]",
        "own address",
    );
    assert_err(
        bad("10.77.0.3/32", "10.77.0.2/32"),
        "peer[1].allowed_ips[0]",
        "already owned by peer[0]",
    );
    assert_err(
        bad(
            "\"10.77.0.2/32\", \"fd77::2/128\"",
            "\"10.77.0.2/32\", \"10.77.0.2/32\"",
        ),
        "peer[0].allowed_ips[1]",
        "duplicate",
    );
    assert_err(
        bad(
            "allowed_ips = [\"10.77.0.2/32\", \"fd77::2/128\"]",
            "allowed_ips = []",
        ),
        "peer[0].allowed_ips",
        "at least one",
    );
}

#[test]
fn bad_endpoints() {
    assert_err(
        bad("192.168.77.2:51830", "192.168.77.2"),
        "peer[0].endpoint",
        "IP:PORT",
    );
    assert_err(
        bad("[fd00::3]:51830", "fd00::3:51830"),
        "peer[1].endpoint",
        "[ADDR]:PORT",
    );
    assert_err(
        bad("192.168.77.2:51830", "192.168.77.2:0"),
        "peer[0].endpoint",
        "port 0",
    );
    assert_err(
        bad("192.168.77.2:51830", "0.0.0.0:1"),
        "peer[0].endpoint",
        "unicast",
    );
}

#[test]
fn duplicates_between_peers() {
    assert_err(
        bad("local_index = 3", "local_index = 1"),
        "peer[1].local_index",
        "duplicate local_index 1 (also peer[0]",
    );
    assert_err(
        bad("name = \"c\"", "name = \"b\""),
        "peer[1].name",
        "duplicate peer name",
    );
    assert_err(
        bad("name = \"c\"", "name = \"  \""),
        "peer[1].name",
        "empty",
    );
    let same = GOOD.replace(
        "recv_key = \"1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100\"",
        "recv_key = \"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\"",
    );
    assert_err(err(&same), "peer[0].recv_key", "differ");
}

#[test]
fn interface_names() {
    assert_err(
        bad("name = \"vpn0\"", "name = \"abcdefghijklmno\""),
        "interface.name",
        "1..=14",
    );
    assert_err(
        bad("name = \"vpn0\"", "name = \"\""),
        "interface.name",
        "1..=14",
    );
    assert_err(
        bad("name = \"vpn0\"", "name = \"a/b\""),
        "interface.name",
        "not a valid",
    );
    assert_err(
        bad("name = \"vpn0\"", "name = \"a b\""),
        "interface.name",
        "not a valid",
    );
    assert_err(
        bad(
            "listen_port = 51830",
            "listen_port = 51830\nunderlay = \"vpn0p\"",
        ),
        "interface.underlay",
        "VPN interface",
    );
}

#[test]
fn syntax_error_names_line() {
    let e = err("[interface]\nname = \"vpn0\"\naddresses = [\"10.0.0.1/24\"\n");
    assert!(e.problem.contains("line"), "{e}");
}

#[test]
fn desired_state_from_lab_peers() {
    let c = Config::parse(GOOD).unwrap();
    let now = 1_764_000_000_123_456_789;
    let d = c.desired_state(now);
    assert_eq!(d.peers.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
    let b = &d.peers[&1];
    assert_eq!(b.name, "b");
    assert_eq!(b.endpoint, Some("192.168.77.2:51830".parse().unwrap()));
    let tx = b.tx.unwrap();
    assert_eq!(tx.remote_index, 2);
    assert_eq!(tx.initial_counter, now);
    assert_eq!(tx.key, c.peers[0].send_key.0);
    assert_eq!(b.rx.len(), 1);
    assert_eq!(b.rx[0].local_index, 1);
    assert_eq!(b.rx[0].key, c.peers[0].recv_key.0);
    assert_eq!(d.peers[&2].name, "c");
    assert_eq!(d.peers[&2].allowed.len(), 2);
    // Same file, same time: same state (idempotent reconciliation input).
    assert_eq!(c.desired_state(now), d);
}

const OVERLAY: &str = r#"
[interface]
name = "vpn0"
listen_port = 51830

[overlay]
identity = "node.key"
certificate = "certs/node.crt"
ca = "/etc/groupvpn/ca.crt"
bootstrap = ["/ip4/192.0.2.10/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"]
"#;

#[test]
fn overlay_defaults() {
    let c = Config::parse(OVERLAY).unwrap();
    assert!(c.interface.addresses.is_empty());
    assert!(c.peers.is_empty());
    let o = c.overlay.unwrap();
    assert_eq!(o.identity, PathBuf::from("node.key"));
    assert_eq!(o.crl, None);
    assert_eq!(o.listen, vec![overlay::DEFAULT_LISTEN.parse().unwrap()]);
    assert_eq!(o.bootstrap.len(), 1);
    assert_eq!(o.public_kad_protocol, "/ipfs/kad/1.0.0");
    assert!(o.announce_listen_addrs);
    assert_eq!(o.rekey_after, std::time::Duration::from_secs(120));
    assert_eq!(o.reject_after, std::time::Duration::from_secs(180));
    assert_eq!(
        o.bootstrap_ips(),
        vec!["192.0.2.10".parse::<std::net::IpAddr>().unwrap()]
    );
    o.session_config().validate().unwrap();
}

#[test]
fn overlay_all_keys_and_short_timers() {
    let c = Config::parse(&format!(
        "{OVERLAY}crl = \"ca.crl\"\nlisten = [\"/ip4/10.0.0.1/tcp/4002\", \"/ip6/::/tcp/4002\"]\n\
         public_kad_protocol = \"/gv/kad/1\"\nannounce_listen_addrs = false\n\
         rekey_after = \"10s\"\nreject_after = \"20s\"\nneighbours = 8\n\
         public_dht_server = false\n"
    ))
    .unwrap();
    let o = c.overlay.unwrap();
    assert_eq!(o.neighbours, 8);
    assert!(!o.public_dht_server);
    assert_eq!(o.crl, Some(PathBuf::from("ca.crl")));
    assert_eq!(o.listen.len(), 2);
    assert_eq!(o.public_kad_protocol, "/gv/kad/1");
    assert!(!o.announce_listen_addrs);
    assert_eq!(o.rekey_after.as_secs(), 10);
    assert_eq!(o.reject_after.as_secs(), 20);
    // The core's constraints hold with the shortened delays.
    let s = o.session_config();
    s.validate().unwrap();
    assert_eq!(s.rekey_after_time.as_secs(), 10);
    assert!(s.responder_rekey_delay <= std::time::Duration::from_secs(5));
    let m = Config::parse(&format!(
        "{OVERLAY}rekey_after = \"2m\"\nreject_after = \"1h\"\n"
    ))
    .unwrap();
    assert_eq!(m.overlay.unwrap().rekey_after.as_secs(), 120);
}

#[test]
fn overlay_errors() {
    let with = |extra: &str| err(&format!("{OVERLAY}{extra}\n"));
    assert_err(
        with("rekey_after = \"4s\""),
        "overlay.rekey_after",
        "minimum",
    );
    assert_err(
        with("rekey_after = \"30s\"\nreject_after = \"30s\""),
        "overlay.reject_after",
        "greater than rekey_after",
    );
    assert_err(
        with("reject_after = \"10\""),
        "overlay.reject_after",
        "unit",
    );
    assert_err(
        with("rekey_after = \"0s\""),
        "overlay.rekey_after",
        "greater than zero",
    );
    assert_err(with("listen = []"), "overlay.listen", "at least one");
    assert_err(
        with("neighbours = 0"),
        "overlay.neighbours",
        "outside 1..=1024",
    );
    assert_err(with("neighbours = 5000"), "overlay.neighbours", "outside");
    assert_err(
        with("neighbours = \"many\""),
        "overlay.neighbours",
        "invalid type",
    );
    assert_err(
        with("listen = [\"tcp/4001\"]"),
        "overlay.listen[0]",
        "not a multiaddr",
    );
    assert_err(
        with("public_kad_protocol = \"kad\""),
        "overlay.public_kad_protocol",
        "'/'",
    );
    assert_err(with("crl = \"\""), "overlay.crl", "empty path");
    assert_err(with("colour = 1"), "overlay.colour", "unknown field");
    assert_err(
        err(&OVERLAY.replace(
            "/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",
            "",
        )),
        "overlay.bootstrap[0]",
        "/p2p/",
    );
    assert_err(
        err(&OVERLAY.replace("ca = \"/etc/groupvpn/ca.crt\"\n", "")),
        "overlay",
        "missing field `ca`",
    );
    // Without [overlay] an address is required.
    assert_err(
        err("[interface]\nname = \"vpn0\"\n"),
        "interface.addresses",
        "at least one address",
    );
}

#[test]
fn overlay_paths_relative_to_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(&path, OVERLAY).unwrap();
    let o = load(&path).unwrap().overlay.unwrap();
    assert_eq!(o.identity, dir.path().join("node.key"));
    assert_eq!(o.certificate, dir.path().join("certs/node.crt"));
    assert_eq!(o.ca, PathBuf::from("/etc/groupvpn/ca.crt"));
}
