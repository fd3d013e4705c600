//! The API and web UI against the real `vpn-server` binary on loopback
//! TLS with SQLite (the default database).

mod common;

use common::{bad_input, cases, crash, server::Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_and_api_on_sqlite() {
    let s = Server::start(None);
    let secrets = cases::full_flow(&s).await;
    at_rest(&s, &secrets);
    bad_input::bad_input(&s).await;
    crash::concurrent_enrolments(&s).await;
    crash::kill_during_enrolments(s).await;
}

/// What the data directory holds: private files 0600, no CA key, blob
/// secret or password in clear in the database.
fn at_rest(s: &Server, secrets: &[String]) {
    use std::os::unix::fs::PermissionsExt as _;
    for f in ["server.key", "tls.key"] {
        let mode = std::fs::metadata(s.data_dir.join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    let mut db = Vec::new();
    for f in ["server.db", "server.db-wal"] {
        if let Ok(b) = std::fs::read(s.data_dir.join(f)) {
            db.extend(b);
        }
    }
    assert!(db.len() > 10_000, "database files not found");
    let text = String::from_utf8_lossy(&db);
    assert!(
        text.contains("BEGIN CERTIFICATE"),
        "certificates are stored"
    );
    // PKCS#8 Ed25519 keys start with these bytes (DER) / characters (base64, PEM).
    let pkcs8 = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70,
    ];
    assert!(!db.windows(pkcs8.len()).any(|w| w == pkcs8), "a raw CA key");
    for needle in ["PRIVATE KEY", "MC4CAQAwBQYDK2Vw", "alice-password"] {
        assert!(!text.contains(needle), "{needle} in the database");
    }
    for secret in secrets {
        assert!(
            !text.contains(secret.as_str()),
            "a blob secret in the database"
        );
    }
}

/// A server key that does not belong to the database is refused at start
/// (instead of failing every signature later).
#[test]
fn refuses_a_foreign_server_key() {
    let s = Server::start(None);
    let out = s.admin(&["create-user", "k"], Some("k-password\n"));
    assert!(out.status.success());
    let out = s.admin(
        &[
            "create-group",
            "kg",
            "--range",
            "10.5.0.0/24",
            "--admin",
            "k",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new(common::server::bin())
        .arg("--data-dir")
        .arg(&s.data_dir)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .env(
            "GROUPVPN_SERVER_KEY",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot decrypt the CA key of group \"kg\""),
        "{err}"
    );
}
