//! The CLI flow end to end, on temporary directories; openssl checks the
//! files it writes.

use clap::Parser;

use super::*;

#[derive(Parser)]
struct T {
    #[command(subcommand)]
    cmd: Top,
}
#[derive(Subcommand)]
enum Top {
    Ca {
        #[command(subcommand)]
        cmd: CaCmd,
    },
    Cert {
        #[command(subcommand)]
        cmd: CertCmd,
    },
}

fn run(args: &[&str], now: SystemTime) -> anyhow::Result<String> {
    let t = T::try_parse_from(std::iter::once("vpn-control").chain(args.iter().copied()))?;
    match t.cmd {
        Top::Ca { cmd } => run_ca_at(cmd, now),
        Top::Cert { cmd } => run_cert_at(cmd, now),
    }
}

#[test]
fn full_cli_flow() {
    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| dir.path().join(p).to_str().unwrap().to_owned();
    let now = SystemTime::now();
    let out = run(
        &[
            "ca",
            "init",
            "--group",
            "lab",
            "--range",
            "10.77.0.0/24",
            "--range6",
            "fd77::/64",
            "--validity",
            "365d",
            "--out",
            &d("ca"),
        ],
        now,
    )
    .unwrap();
    assert!(out.contains("created group CA \"lab\""), "{out}");
    // A second init into the same directory is refused.
    assert!(run(
        &[
            "ca",
            "init",
            "--group",
            "lab",
            "--range",
            "10.77.0.0/24",
            "--out",
            &d("ca")
        ],
        now
    )
    .is_err());

    let peer = run(&["cert", "identity", "--file", &d("node.key")], now).unwrap();
    let peer = peer.trim();
    let out = run(
        &[
            "cert",
            "sign",
            "--ca-dir",
            &d("ca"),
            "--peer-id",
            peer,
            "--name",
            "alice",
            "--address",
            "10.77.0.5",
            "--roles",
            "member,gateway",
            "--validity",
            "90d",
            "--out",
            &d("alice.crt"),
        ],
        now,
    )
    .unwrap();
    assert!(out.contains(peer), "{out}");
    let out = run(
        &[
            "cert",
            "sign",
            "--ca-dir",
            &d("ca"),
            "--identity",
            &d("node.key"),
            "--name",
            "bob",
            "--allocate",
            "--out",
            &d("bob.crt"),
        ],
        now,
    )
    .unwrap();
    assert!(out.contains("allocate"), "{out}");
    run(
        &[
            "cert",
            "request",
            "--identity",
            &d("n2.key"),
            "--name",
            "carol",
            "--out",
            &d("carol.csr"),
        ],
        now,
    )
    .unwrap();
    run(
        &[
            "cert",
            "sign",
            "--ca-dir",
            &d("ca"),
            "--csr",
            &d("carol.csr"),
            "--name",
            "carol",
            "--address",
            "10.77.0.7",
            "--address",
            "fd77::7",
            "--out",
            &d("carol.crt"),
        ],
        now,
    )
    .unwrap();
    // Both --address and --allocate, or no key source: refused by clap.
    assert!(run(
        &[
            "cert",
            "sign",
            "--ca-dir",
            &d("ca"),
            "--peer-id",
            peer,
            "--name",
            "x",
            "--address",
            "10.77.0.9",
            "--allocate",
            "--out",
            &d("x.crt")
        ],
        now
    )
    .is_err());
    assert!(run(
        &[
            "cert",
            "sign",
            "--ca-dir",
            &d("ca"),
            "--name",
            "x",
            "--allocate",
            "--out",
            &d("x.crt")
        ],
        now
    )
    .is_err());

    let text = run(&["cert", "print", &d("alice.crt")], now).unwrap();
    assert!(text.contains("Roles:       member, gateway"), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&run(&["cert", "print", "--json", &d("carol.crt")], now).unwrap())
            .unwrap();
    assert_eq!(
        json["addresses"],
        serde_json::json!(["10.77.0.7", "fd77::7"])
    );
    assert_eq!(json["group"], "lab");
    let ca_json: serde_json::Value =
        serde_json::from_str(&run(&["cert", "print", "--json", &d("ca/ca.crt")], now).unwrap())
            .unwrap();
    assert_eq!(ca_json["kind"], "ca");
    assert_eq!(
        ca_json["ranges"],
        serde_json::json!(["10.77.0.0/24", "fd77::/64"])
    );

    let ok = run(
        &[
            "cert",
            "verify",
            "--ca",
            &d("ca/ca.crt"),
            &d("alice.crt"),
            "--peer-id",
            peer,
            "--group",
            "lab",
        ],
        now,
    )
    .unwrap();
    assert!(ok.contains(": OK"), "{ok}");
    let e = run(
        &[
            "cert",
            "verify",
            "--ca",
            &d("ca/ca.crt"),
            &d("alice.crt"),
            "--group",
            "other",
        ],
        now,
    )
    .unwrap_err();
    assert!(
        format!("{e:#}").contains("expected group \"other\""),
        "{e:#}"
    );

    // Revoke alice by file, publish, verify with the CRL.
    run(
        &["ca", "crl", "--ca-dir", &d("ca"), "--out", &d("crl.pem")],
        now,
    )
    .unwrap();
    run(
        &[
            "cert",
            "verify",
            "--ca",
            &d("ca/ca.crt"),
            "--crl",
            &d("crl.pem"),
            &d("alice.crt"),
        ],
        now,
    )
    .unwrap();
    let out = run(
        &[
            "ca",
            "revoke",
            "--ca-dir",
            &d("ca"),
            "--cert",
            &d("alice.crt"),
            "--reason",
            "keyCompromise",
        ],
        now,
    )
    .unwrap();
    assert!(out.starts_with("revoked serial"), "{out}");
    let again = run(
        &[
            "ca",
            "revoke",
            "--ca-dir",
            &d("ca"),
            "--cert",
            &d("alice.crt"),
        ],
        now,
    )
    .unwrap();
    assert!(again.contains("already revoked"), "{again}");
    let out = run(
        &[
            "ca",
            "crl",
            "--ca-dir",
            &d("ca"),
            "--out",
            &d("crl.pem"),
            "--next-update",
            "1d",
        ],
        now,
    )
    .unwrap();
    assert!(out.contains("CRL number 2, 1 revoked"), "{out}");
    let e = run(
        &[
            "cert",
            "verify",
            "--ca",
            &d("ca/ca.crt"),
            "--crl",
            &d("crl.pem"),
            &d("alice.crt"),
        ],
        now,
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("revoked"), "{e:#}");
    run(
        &[
            "cert",
            "verify",
            "--ca",
            &d("ca/ca.crt"),
            "--crl",
            &d("crl.pem"),
            &d("bob.crt"),
        ],
        now,
    )
    .unwrap();
    let e = run(
        &[
            "cert",
            "verify",
            "--ca",
            &d("ca/ca.crt"),
            "--crl",
            &d("crl.pem"),
            &d("bob.crt"),
        ],
        now + std::time::Duration::from_secs(2 * 86_400),
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("stale"), "{e:#}");

    // A certificate of another CA cannot be revoked here.
    run(
        &[
            "ca",
            "init",
            "--group",
            "other",
            "--range",
            "10.88.0.0/24",
            "--out",
            &d("ca2"),
        ],
        now,
    )
    .unwrap();
    run(
        &[
            "cert",
            "sign",
            "--ca-dir",
            &d("ca2"),
            "--peer-id",
            peer,
            "--name",
            "m",
            "--allocate",
            "--out",
            &d("m.crt"),
        ],
        now,
    )
    .unwrap();
    let e = run(
        &["ca", "revoke", "--ca-dir", &d("ca"), "--cert", &d("m.crt")],
        now,
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("not issued by this CA"), "{e:#}");
    run(
        &["ca", "revoke", "--ca-dir", &d("ca"), "--serial", "01:02"],
        now,
    )
    .unwrap();

    // openssl accepts the files the CLI wrote.
    let st = std::process::Command::new("openssl")
        .args([
            "verify",
            "-CAfile",
            &d("ca/ca.crt"),
            &d("bob.crt"),
            &d("carol.crt"),
        ])
        .status()
        .expect("openssl (Debian package `openssl`) must be installed");
    assert!(st.success());
}
