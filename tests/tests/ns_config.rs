//! A malformed configuration makes `vpn-control up` exit non-zero with the
//! offending key named on stderr, and changes nothing in the namespace.

use std::time::Duration;

use vpn_tests::{require_root, Background, Dataplane, Lab, NetState};

/// (what to replace, replacement, key that must be named)
const CASES: &[(&str, &str, &str)] = &[
    (
        "send_key = \"",
        "send_key = \"0001020304ab\"\n#",
        "peer[0].send_key",
    ),
    ("listen_port", "listen_prot", "interface.listen_prot"),
    (
        "dataplane = \"kernel\"",
        "dataplane = \"turbo\"",
        "interface.dataplane",
    ),
    ("local_index = ", "local_index = -", "peer[0].local_index"),
];

#[test]
fn ns_malformed_config_names_the_key() {
    if !require_root("ns_malformed_config_names_the_key") {
        return;
    }
    let lab = Lab::new("cfg", &[Dataplane::Kernel, Dataplane::Kernel]).unwrap();
    let node = lab.node(0);
    let good = std::fs::read_to_string(&node.config).unwrap();
    let before = NetState::capture(node.ns()).unwrap();
    for (i, (from, to, key)) in CASES.iter().enumerate() {
        assert!(
            good.contains(from),
            "case {i}: {from:?} not in the lab config"
        );
        let bad = good.replacen(from, to, 1);
        let path = lab.dir().join(format!("bad{i}.toml"));
        std::fs::write(&path, &bad).unwrap();
        let mut cmd = node.command(["up", "-c"]);
        cmd.arg(&path);
        let mut p = Background::spawn(
            "vpn-control up (bad config)",
            cmd,
            &path.with_extension("log"),
        )
        .unwrap();
        let st = p
            .wait(Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("case {i} ({key}): `up` kept running: {e}\n{}", p.log()));
        let log = p.log();
        assert!(!st.success(), "case {i}: `up` accepted a bad {key}:\n{bad}");
        assert!(
            log.contains(key),
            "case {i}: stderr does not name {key}: {log}"
        );
        let after = NetState::capture(node.ns()).unwrap();
        assert!(
            before == after,
            "case {i}: a failed `up` changed state:\n{}",
            before.diff(&after)
        );
    }
}
