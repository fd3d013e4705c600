//! Enrolment client tests against an in-process HTTPS server (rustls, a
//! self-signed rcgen certificate) that implements the enrol/renew/CRL API
//! with a real `vpn_pki` group CA. The real `vpn-server` is exercised by
//! `tests/tests/server_*.rs`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use vpn_pki::{AddressAssignment, CaParams, CertProfile, GroupCa, IpRange, Role};

use super::*;

// ---------------------------------------------------------------- blobs

fn sample_blob() -> Blob {
    Blob {
        v: 1,
        server: "https://127.0.0.1:8443".into(),
        server_cert_sha256: "ab".repeat(32),
        group: "lab".into(),
        node_name: "alice".into(),
        secret: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 32]),
    }
}

fn encode_json(v: &serde_json::Value) -> String {
    format!(
        "{BLOB_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    )
}

#[test]
fn blob_round_trip_and_whitespace() {
    let b = sample_blob();
    let text = b.encode();
    assert!(text.starts_with("groupvpn1:"));
    assert_eq!(Blob::parse(&text).unwrap(), b);
    // Wrapped and indented as in an e-mail.
    let wrapped: String = text
        .as_bytes()
        .chunks(20)
        .map(|c| format!("  {}\n", std::str::from_utf8(c).unwrap()))
        .collect();
    assert_eq!(Blob::parse(&wrapped).unwrap(), b);
    assert_eq!(b.pin(), [0xab; 32]);
    // The secret never shows in Debug output.
    assert!(!format!("{b:?}").contains(&b.secret));
}

#[test]
fn blob_fingerprint_forms() {
    let mut v = serde_json::to_value(sample_blob()).unwrap();
    let colons: Vec<String> = (0..32).map(|_| "AB".to_owned()).collect();
    v["server_cert_sha256"] = colons.join(":").into();
    let b = Blob::parse(&encode_json(&v)).unwrap();
    assert_eq!(b.server_cert_sha256, "ab".repeat(32));
}

#[test]
fn blob_errors_are_specific() {
    let ok = serde_json::to_value(sample_blob()).unwrap();
    let with = |k: &str, val: serde_json::Value| {
        let mut v = ok.clone();
        v[k] = val;
        Blob::parse(&encode_json(&v)).unwrap_err()
    };
    assert_eq!(Blob::parse("  \n").unwrap_err(), BlobError::Empty);
    assert_eq!(Blob::parse("hello").unwrap_err(), BlobError::MissingPrefix);
    assert_eq!(
        Blob::parse("groupvpn2:abcd").unwrap_err(),
        BlobError::UnsupportedVersion("2".into())
    );
    assert!(matches!(
        Blob::parse("groupvpn1:not*base64!").unwrap_err(),
        BlobError::Base64(_)
    ));
    assert!(matches!(
        Blob::parse(&format!(
            "groupvpn1:{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("{\"v\":1}")
        ))
        .unwrap_err(),
        BlobError::Json(_)
    ));
    assert_eq!(
        with("v", 2.into()),
        BlobError::UnsupportedVersion("2".into())
    );
    let field_of = |e: BlobError| match e {
        BlobError::Field { field, .. } => field,
        other => panic!("expected a field error, got {other:?}"),
    };
    assert_eq!(
        field_of(with("server", "http://127.0.0.1:8443".into())),
        "server"
    );
    assert_eq!(field_of(with("server", "https://h:0".into())), "server");
    assert_eq!(
        field_of(with("server_cert_sha256", "ab".repeat(31).into())),
        "server_cert_sha256"
    );
    assert_eq!(
        field_of(with("server_cert_sha256", "zz".repeat(32).into())),
        "server_cert_sha256"
    );
    assert_eq!(field_of(with("group", "bad group".into())), "group");
    assert_eq!(field_of(with("node_name", "".into())), "node_name");
    assert_eq!(field_of(with("secret", "c2hvcnQ".into())), "secret");
    assert_eq!(field_of(with("secret", "***".into())), "secret");
    // Messages name the problem for a person.
    let msg = with("secret", "c2hvcnQ".into()).to_string();
    assert!(
        msg.contains("secret") && msg.contains("expected 32"),
        "{msg}"
    );
}

// ------------------------------------------------------- a fake server

type Handler = dyn Fn(&str, &str, &[u8]) -> (u16, String) + Send + Sync;

/// A one-request-per-connection HTTPS server on loopback.
struct FakeServer {
    addr: SocketAddr,
    pin: [u8; 32],
    /// Every request it decrypted: "METHOD PATH\nBODY".
    seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl FakeServer {
    fn start(handler: Arc<Handler>) -> Self {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert: CertificateDer<'static> = ck.cert.der().clone();
        let pin = Sha256::digest(cert.as_ref()).into();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()));
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(tcp) = tcp else { continue };
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
                let conn = rustls::ServerConnection::new(config.clone()).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                if let Some((method, path, body)) = read_request(&mut tls) {
                    seen2.lock().unwrap().push(format!(
                        "{method} {path}\n{}",
                        String::from_utf8_lossy(&body)
                    ));
                    let (status, text) = handler(&method, &path, &body);
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                        text.len()
                    );
                    let _ = tls.write_all(resp.as_bytes());
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                }
            }
        });
        Self {
            addr,
            pin,
            seen,
            stop,
        }
    }

    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(self.addr);
    }
}

fn read_request(r: &mut impl Read) -> Option<(String, String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = r.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut hdrs = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut hdrs);
        if let Ok(httparse::Status::Complete(head)) = req.parse(&buf) {
            let len: usize = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
                .unwrap_or(0);
            if buf.len() >= head + len {
                return Some((
                    req.method?.to_owned(),
                    req.path?.to_owned(),
                    buf[head..head + len].to_vec(),
                ));
            }
        }
    }
}

use sha2::{Digest as _, Sha256};

// ---------------------------------------------------------------- pinning

fn echo_server() -> FakeServer {
    FakeServer::start(Arc::new(|_, _, _| (200, "{\"ok\":true}".into())))
}

#[test]
fn right_pin_talks() {
    let s = echo_server();
    let c = PinnedClient::new(&s.url(), s.pin).unwrap();
    let v: serde_json::Value = c.get_json("/healthz").unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(s.requests().len(), 1);
}

#[test]
fn wrong_pin_fails_before_sending_anything() {
    let s = echo_server();
    let mut wrong = s.pin;
    wrong[0] ^= 1;
    let c = PinnedClient::new(&s.url(), wrong)
        .unwrap()
        .with_timeout(Duration::from_secs(5));
    let err = c
        .post_json::<_, serde_json::Value>(
            "/api/v1/enroll",
            &serde_json::json!({"secret": "s3cr3t"}),
        )
        .unwrap_err();
    match &err {
        EnrollError::PinMismatch { expected, got, .. } => {
            assert_eq!(expected, &blob::hex(&wrong));
            assert_eq!(got, &blob::hex(&s.pin));
        }
        other => panic!("expected PinMismatch, got {other:?}"),
    }
    assert!(err.to_string().contains("refusing"), "{err}");
    // The server never saw a request (and so never the secret).
    std::thread::sleep(Duration::from_millis(100));
    assert!(s.requests().is_empty(), "{:?}", s.requests());
}

#[test]
fn join_with_wrong_pin_writes_no_certificate() {
    let s = echo_server();
    let dir = tempfile::tempdir().unwrap();
    let mut b = sample_blob();
    b.server = s.url();
    b.server_cert_sha256 = "00".repeat(32);
    let err = join(&b.encode(), dir.path(), SystemTime::now()).unwrap_err();
    assert!(matches!(err, EnrollError::PinMismatch { .. }), "{err:?}");
    assert!(!dir.path().join(NODE_CRT).exists());
    assert!(s.requests().is_empty());
}

#[test]
fn nothing_listening_is_a_connect_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = PinnedClient::new(&format!("https://127.0.0.1:{port}"), [0; 32]).unwrap();
    let err = c.get_json::<serde_json::Value>("/").unwrap_err();
    assert!(matches!(err, EnrollError::Connect { .. }), "{err:?}");
}

// ------------------------------------------------- enrol/renew flows

/// A fake group server: one CA, secrets single use, renewals for known
/// PeerIds, a CRL whose number the test controls.
struct FakeGroup {
    server: FakeServer,
    ca: Arc<GroupCa>,
    crl_number: Arc<AtomicU64>,
    /// Sign certificates for this key instead of the CSR's (a bad server).
    rogue_key: Arc<Mutex<Option<[u8; 32]>>>,
}

const SECRET: [u8; 32] = [9; 32];

/// A fixed, valid bootstrap multiaddr (PeerId of a fixed seed).
fn bootstrap_addr() -> String {
    let id = NodeIdentity::from_seed([3; 32]).unwrap();
    format!("/ip4/127.0.0.1/tcp/4001/p2p/{}", id.peer_id())
}

fn fake_group() -> FakeGroup {
    let now = SystemTime::now();
    let ca = Arc::new(
        GroupCa::init(
            &CaParams {
                group: "lab".into(),
                ranges: vec!["10.77.0.0/24".parse::<IpRange>().unwrap()],
                validity: Duration::from_secs(365 * 86400),
            },
            now,
        )
        .unwrap(),
    );
    let crl_number = Arc::new(AtomicU64::new(1));
    let rogue_key: Arc<Mutex<Option<[u8; 32]>>> = Arc::new(Mutex::new(None));
    let used = Arc::new(AtomicBool::new(false));
    let (ca2, n2, rogue2) = (ca.clone(), crl_number.clone(), rogue_key.clone());
    let secret_b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(SECRET);
    let boot = bootstrap_addr();
    let handler = move |method: &str, path: &str, body: &[u8]| -> (u16, String) {
        let now = SystemTime::now();
        let crl = ca2
            .sign_crl(
                &[],
                n2.load(Ordering::SeqCst),
                now,
                Duration::from_secs(7 * 86400),
            )
            .unwrap();
        let err = |s: u16, m: &str| (s, serde_json::json!({ "error": m }).to_string());
        match (method, path) {
            ("GET", "/api/v1/groups/lab/crl") => (
                200,
                serde_json::json!({"crl_pem": crl.to_pem(), "number": crl.number(),
                    "this_update": "2026-01-01T00:00:00Z", "next_update": "2026-01-08T00:00:00Z"})
                .to_string(),
            ),
            ("POST", "/api/v1/enroll" | "/api/v1/renew") => {
                let v: serde_json::Value = match serde_json::from_slice(body) {
                    Ok(v) => v,
                    Err(_) => return err(400, "bad json"),
                };
                if path.ends_with("enroll") {
                    if v["secret"] != secret_b64.as_str() {
                        return err(401, "unknown secret");
                    }
                    if used.swap(true, Ordering::SeqCst) {
                        return err(409, "secret already used");
                    }
                }
                let csr = vpn_pki::csr_from_pem_or_der(
                    v["csr_pem"].as_str().unwrap_or_default().as_bytes(),
                )
                .unwrap();
                let info = vpn_pki::verify_csr(&csr).unwrap();
                let key = rogue2.lock().unwrap().unwrap_or(info.public_key);
                let cert = ca2
                    .issue(
                        &key,
                        &CertProfile {
                            name: "alice".into(),
                            address: AddressAssignment::Fixed(vec!["10.77.0.5".parse().unwrap()]),
                            roles: vec![Role::Member],
                            validity: Duration::from_secs(30 * 86400),
                        },
                        now,
                    )
                    .unwrap();
                (
                    200,
                    serde_json::json!({
                        "certificate_pem": cert.to_pem(),
                        "ca_pem": ca2.certificate().to_pem(),
                        "crl_pem": crl.to_pem(),
                        "group": {"name": "lab", "ranges": ["10.77.0.0/24"],
                            "bootstrap": [boot.clone()],
                            "public_kad_protocol": "/ipfs/kad/1.0.0"},
                        "renew_after": vpn_pki::fmt_time(now + Duration::from_secs(20 * 86400)),
                        "not_after": vpn_pki::fmt_time(cert.info().not_after),
                    })
                    .to_string(),
                )
            }
            _ => err(404, "not found"),
        }
    };
    FakeGroup {
        server: FakeServer::start(Arc::new(handler)),
        ca,
        crl_number,
        rogue_key,
    }
}

fn group_blob(g: &FakeGroup) -> String {
    let mut b = sample_blob();
    b.server = g.server.url();
    b.server_cert_sha256 = blob::hex(&g.server.pin);
    b.secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(SECRET);
    b.encode()
}

#[test]
fn join_writes_verified_files_and_config() {
    let g = fake_group();
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let r = join(&group_blob(&g), dir.path(), now).unwrap();
    assert!(r.identity_created);
    assert_eq!((r.name.as_str(), r.group.as_str()), ("alice", "lab"));
    assert_eq!(r.addresses, ["10.77.0.5/24"]);
    assert!(!r.config_kept);
    let f = |n: &str| dir.path().join(n);
    let mode = |n: &str| std::fs::metadata(f(n)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(NODE_KEY), 0o600);
    assert_eq!(mode(NODE_CRT), 0o644);
    // The written certificate verifies against the written CA and CRL.
    let id = NodeIdentity::load(&f(NODE_KEY)).unwrap();
    let ca = CaCertificate::load(&f(CA_CRT)).unwrap();
    assert_eq!(ca.der(), g.ca.certificate().der());
    let crl = Crl::load(&f(CA_CRL)).unwrap();
    let cert = MemberCert::load(&f(NODE_CRT)).unwrap();
    verify_member_cert(&cert, &ca, Some(&crl), &id.peer_id(), "lab", now).unwrap();
    assert_eq!(r.peer_id, id.peer_id().to_string());
    // server.json lets renew find the server again.
    let si: ServerInfo = serde_json::from_slice(&std::fs::read(f(SERVER_JSON)).unwrap()).unwrap();
    assert_eq!(si.server, g.server.url());
    assert_eq!(si.server_cert_sha256, blob::hex(&g.server.pin));
    assert_eq!(si.group, "lab");
    // groupvpn.toml: [interface] + [overlay] per the contract.
    let cfg: toml::Value =
        toml::from_str(&std::fs::read_to_string(f(CONFIG_TOML)).unwrap()).unwrap();
    assert_eq!(cfg["interface"]["name"].as_str(), Some("vpn0"));
    assert_eq!(
        cfg["interface"]["addresses"][0].as_str(),
        Some("10.77.0.5/24")
    );
    let o = &cfg["overlay"];
    assert_eq!(o["identity"].as_str(), Some("node.key"));
    assert_eq!(o["certificate"].as_str(), Some("node.crt"));
    assert_eq!(o["ca"].as_str(), Some("ca.crt"));
    assert_eq!(o["crl"].as_str(), Some("ca.crl"));
    assert_eq!(o["bootstrap"][0].as_str(), Some(bootstrap_addr().as_str()));
    assert_eq!(o["public_kad_protocol"].as_str(), Some("/ipfs/kad/1.0.0"));
    // ... and the daemon's own parser accepts it, paths resolved to the folder.
    let parsed = crate::config::load(&f(CONFIG_TOML)).unwrap();
    let ov = parsed.overlay.expect("[overlay] parsed");
    assert_eq!(ov.certificate, f(NODE_CRT));
    assert_eq!(ov.crl, Some(f(CA_CRL)));
    assert_eq!(ov.bootstrap.len(), 1);
    // The request carried the secret and a CSR for our key.
    let reqs = g.server.requests();
    assert_eq!(reqs.len(), 1);
    assert!(reqs[0].starts_with("POST /api/v1/enroll\n"), "{}", reqs[0]);

    // A second join with the same (now used) blob: a clear 409 and the files stay.
    let before = std::fs::read(f(NODE_CRT)).unwrap();
    let err = join(&group_blob(&g), dir.path(), now).unwrap_err();
    assert!(
        matches!(err, EnrollError::Server { status: 409, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("already used"), "{err}");
    assert_eq!(std::fs::read(f(NODE_CRT)).unwrap(), before);
}

#[test]
fn join_keeps_an_existing_identity_and_config() {
    let g = fake_group();
    let dir = tempfile::tempdir().unwrap();
    let id = NodeIdentity::generate();
    id.save_new(&dir.path().join(NODE_KEY)).unwrap();
    std::fs::write(dir.path().join(CONFIG_TOML), "# mine\n").unwrap();
    let r = join(&group_blob(&g), dir.path(), SystemTime::now()).unwrap();
    assert!(!r.identity_created);
    assert_eq!(r.peer_id, id.peer_id().to_string());
    assert!(r.config_kept);
    assert_eq!(
        std::fs::read_to_string(dir.path().join(CONFIG_TOML)).unwrap(),
        "# mine\n"
    );
}

#[test]
fn join_refuses_a_certificate_for_another_key() {
    let g = fake_group();
    *g.rogue_key.lock().unwrap() = Some(NodeIdentity::generate().public_key());
    let dir = tempfile::tempdir().unwrap();
    let err = join(&group_blob(&g), dir.path(), SystemTime::now()).unwrap_err();
    assert!(
        matches!(
            err,
            EnrollError::BadIssued {
                source: PkiError::PeerMismatch { .. },
                ..
            }
        ),
        "{err:?}"
    );
    for f in [NODE_CRT, CA_CRT, CA_CRL, SERVER_JSON, CONFIG_TOML] {
        assert!(!dir.path().join(f).exists(), "{f} written");
    }
}

#[test]
fn join_with_an_unknown_secret_is_401() {
    let g = fake_group();
    let dir = tempfile::tempdir().unwrap();
    let mut b = Blob::parse(&group_blob(&g)).unwrap();
    b.secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([1u8; 32]);
    let err = join(&b.encode(), dir.path(), SystemTime::now()).unwrap_err();
    assert!(
        matches!(err, EnrollError::Server { status: 401, .. }),
        "{err:?}"
    );
}

#[test]
fn renewal_and_crl_refresh() {
    let g = fake_group();
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    join(&group_blob(&g), dir.path(), now).unwrap();
    // renew_after from the server: 20 days.
    assert!(!renewal_due(dir.path(), now).unwrap());
    assert!(renewal_due(dir.path(), now + Duration::from_secs(21 * 86400)).unwrap());
    let at = renewal_time(dir.path()).unwrap();
    assert!(
        at > now + Duration::from_secs(19 * 86400) && at < now + Duration::from_secs(21 * 86400)
    );

    // Not due: only the CRL is checked; same number: nothing replaced.
    let serial0 = MemberCert::load(&dir.path().join(NODE_CRT))
        .unwrap()
        .info()
        .serial
        .clone();
    let out = renew(dir.path(), false, now).unwrap();
    assert!(!out.renewed && !out.crl_updated);
    assert_eq!(out.crl_number, Some(1));
    // A newer CRL replaces ca.crl.
    g.crl_number.store(5, Ordering::SeqCst);
    let out = renew(dir.path(), false, now).unwrap();
    assert!(!out.renewed && out.crl_updated);
    assert_eq!(
        Crl::load(&dir.path().join(CA_CRL)).unwrap().number(),
        Some(5)
    );
    // An older one (a replay) does not.
    g.crl_number.store(3, Ordering::SeqCst);
    let out = renew(dir.path(), false, now).unwrap();
    assert!(!out.crl_updated);
    assert_eq!(out.crl_number, Some(5));
    // Forced renewal: a new certificate for the same key.
    g.crl_number.store(6, Ordering::SeqCst);
    let out = renew(dir.path(), true, now).unwrap();
    assert!(out.renewed && out.crl_updated, "{out}");
    let cert = MemberCert::load(&dir.path().join(NODE_CRT)).unwrap();
    assert_ne!(cert.info().serial, serial0);
    let id = NodeIdentity::load(&dir.path().join(NODE_KEY)).unwrap();
    assert_eq!(cert.info().peer_id, id.peer_id());
    assert!(g
        .server
        .requests()
        .iter()
        .any(|r| r.starts_with("POST /api/v1/renew\n")));
}

#[test]
fn renew_in_an_empty_folder_says_join_first() {
    let dir = tempfile::tempdir().unwrap();
    let err = renew(dir.path(), false, SystemTime::now()).unwrap_err();
    assert!(matches!(err, EnrollError::NotEnrolled { .. }), "{err:?}");
    assert!(err.to_string().contains("vpn-control join"), "{err}");
}
