//! The scenarios every database runs: the whole flow through the web UI
//! and the API, and each kind of bad input.

use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};
use vpn_pki::{AddressAssignment, CaCertificate, Crl, MemberCert, NodeIdentity, PkiError};

use super::client::{blob_of, Client};
use super::server::Server;
use super::web::{self, post_action, request_ids};

/// A fresh node key and its CSR (PEM), as `vpn-control join` makes them.
pub fn node(name: &str) -> (NodeIdentity, String) {
    let id = NodeIdentity::generate();
    let csr = vpn_pki::csr_to_pem(&vpn_pki::make_csr(&id, name).unwrap());
    (id, csr)
}

/// The JSON inside a blob.
pub fn decode_blob(blob: &str) -> Value {
    let b64 = blob.strip_prefix("groupvpn1:").expect("blob prefix");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(b64).unwrap()).unwrap()
}

pub async fn enroll(c: &mut Client, secret: &str, csr: &str) -> super::client::Resp {
    c.post_json(
        "/api/v1/enroll",
        &json!({ "secret": secret, "csr_pem": csr }),
    )
    .await
}

/// Checks an enrol/renew answer with vpn-pki: the certificate verifies
/// under the returned CA and CRL for this key, group and name; returns
/// (address, serial).
pub fn check_issued(v: &Value, id: &NodeIdentity, group: &str, name: &str) -> (String, String) {
    let ca = CaCertificate::from_pem_or_der(v["ca_pem"].as_str().unwrap().as_bytes()).unwrap();
    let crl = Crl::from_pem_or_der(v["crl_pem"].as_str().unwrap().as_bytes()).unwrap();
    let cert =
        MemberCert::from_pem_or_der(v["certificate_pem"].as_str().unwrap().as_bytes()).unwrap();
    let info = vpn_pki::verify_member(
        cert.der(),
        &ca,
        Some(&crl),
        &id.peer_id(),
        group,
        SystemTime::now(),
    )
    .unwrap();
    assert_eq!(info.name, name);
    let AddressAssignment::Fixed(addrs) = &info.address else {
        panic!("no fixed address: {:?}", info.address)
    };
    assert_eq!(v["group"]["name"], group);
    assert_eq!(v["group"]["public_kad_protocol"], "/ipfs/kad/1.0.0");
    assert!(v["renew_after"].as_str().unwrap() < v["not_after"].as_str().unwrap());
    (addrs[0].to_string(), info.serial.to_string())
}

async fn ok_page(c: &mut Client, path: &str) -> String {
    let r = c.get(path).await;
    assert_eq!(r.status, 200, "GET {path}: {}", r.body);
    r.body
}

/// The whole flow: accounts, group, join request, approval, blob, enrol,
/// renew, CRL, revocation, audit log, settings, logout.
/// Returns the blob secrets it used (for the at-rest checks).
pub async fn full_flow(s: &Server) -> Vec<String> {
    let mut anon = s.client();
    let r = anon.get("/healthz").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    let api = anon.get("/api/v1/openapi.json").await.json();
    assert_eq!(api["openapi"], "3.1.0");
    for p in [
        "/api/v1/enroll",
        "/api/v1/renew",
        "/api/v1/groups/{group}/crl",
    ] {
        assert!(api["paths"][p].is_object(), "{p}");
    }

    // Accounts: API and web.
    let r = anon
        .post_json(
            "/api/v1/accounts",
            &json!({"username": "carol", "password": "carol-password"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = anon
        .post_json(
            "/api/v1/accounts",
            &json!({"username": "carol", "password": "other-password"}),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    let mut alice = s.client();
    let r = web::register(&mut alice, "alice", "alice-password").await;
    assert_eq!(
        (r.status, r.location()),
        (303, Some("/groups")),
        "{}",
        r.body
    );
    let sc = r
        .headers
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    for attr in ["gv_session=", "Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(sc.contains(attr), "{sc}");
    }
    let mut bob = s.client();
    assert_eq!(
        web::register(&mut bob, "bob", "bob-password").await.status,
        303
    );
    let mut carol = s.client();
    assert_eq!(
        web::login(&mut carol, "carol", "carol-password")
            .await
            .status,
        303
    );

    // alice creates the group and becomes its administrator.
    let r = web::create_group(&mut alice, "lab", "10.77.0.0/24", "30").await;
    assert_eq!(
        (r.status, r.location()),
        (303, Some("/groups/lab")),
        "{}",
        r.body
    );
    let page = ok_page(&mut alice, "/groups/lab").await;
    assert!(page.contains("<p class=\"flash\">"), "{page}");
    assert!(page.contains("administrator"));

    // bob asks to join; his reason is shown escaped.
    let reason = "<script>alert(1)</script> '; DROP TABLE members;--";
    let r = web::join(&mut bob, "lab", "bob-laptop", reason).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let r = web::join(&mut bob, "lab", "bob-2", "again").await;
    assert_eq!(r.status, 409, "second pending request: {}", r.body);
    assert_eq!(bob.get("/groups/lab").await.status, 403, "not a member yet");
    let page = ok_page(&mut alice, "/groups/lab").await;
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(!page.contains("<script>"));
    let ids = request_ids(&page);
    assert_eq!(ids.len(), 1, "{page}");
    let approve = format!("/groups/lab/requests/{}/approve", ids[0]);
    assert_eq!(
        post_action(&mut bob, &approve).await.status,
        403,
        "self-approval"
    );
    assert_eq!(post_action(&mut carol, &approve).await.status, 403);
    let r = post_action(&mut alice, &approve).await;
    assert_eq!((r.status, r.location()), (303, Some("/groups/lab")));
    let page = ok_page(&mut alice, "/groups/lab").await;
    assert!(request_ids(&page).is_empty());
    assert!(page.contains("id=\"member-bob-laptop\""), "{page}");
    assert!(page.contains("id=\"revoke-bob-laptop\""));
    assert_eq!(post_action(&mut alice, &approve).await.status, 409, "twice");

    // bob's blob: each view makes a new secret; the old one stops working.
    let b1 = blob_of(&ok_page(&mut bob, "/groups/lab/blob").await).expect("pre#blob");
    let page = ok_page(&mut bob, "/groups/lab/blob").await;
    assert!(page.contains("id=\"blob-download\""));
    let b2 = blob_of(&page).unwrap();
    assert_ne!(b1, b2);
    let blob = decode_blob(&b2);
    assert_eq!(blob["v"], 1);
    assert_eq!(blob["server"], s.url.as_str());
    assert_eq!(blob["server_cert_sha256"], s.sha256.as_str());
    assert_eq!(blob["group"], "lab");
    assert_eq!(blob["node_name"], "bob-laptop");
    let secret = blob["secret"].as_str().unwrap().to_owned();
    let (bob_id, bob_csr) = node("bob-laptop");
    let old = decode_blob(&b1)["secret"].as_str().unwrap().to_owned();
    assert_eq!(enroll(&mut anon, &old, &bob_csr).await.status, 401);

    // Enrolment.
    let r = enroll(&mut anon, &secret, &bob_csr).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let first = r.json();
    let (addr, serial1) = check_issued(&first, &bob_id, "lab", "bob-laptop");
    assert_eq!(addr, "10.77.0.1");
    assert_eq!(first["group"]["ranges"], json!(["10.77.0.0/24"]));
    let r = enroll(&mut anon, &secret, &bob_csr).await;
    assert_eq!(r.status, 409, "reused secret: {}", r.body);
    let page = ok_page(&mut bob, "/groups/lab/blob").await;
    assert!(blob_of(&page).is_none());
    assert!(page.contains(&bob_id.peer_id().to_string()));

    // carol joins too; bob's key cannot be enrolled a second time.
    assert_eq!(
        web::join(&mut carol, "lab", "carol-pc", "work")
            .await
            .status,
        303
    );
    let ids = request_ids(&ok_page(&mut alice, "/groups/lab").await);
    let r = post_action(
        &mut alice,
        &format!("/groups/lab/requests/{}/approve", ids[0]),
    )
    .await;
    assert_eq!(r.status, 303);
    let cb = decode_blob(&blob_of(&ok_page(&mut carol, "/groups/lab/blob").await).unwrap());
    let csecret = cb["secret"].as_str().unwrap().to_owned();
    let r = enroll(&mut anon, &csecret, &bob_csr).await;
    assert_eq!(r.status, 409, "bob's PeerId again: {}", r.body);
    let (carol_id, carol_csr) = node("carol-pc");
    let r = enroll(&mut anon, &csecret, &carol_csr).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (caddr, _) = check_issued(&r.json(), &carol_id, "lab", "carol-pc");
    assert_eq!(caddr, "10.77.0.2");

    // Renewal: same name and address, new serial.
    let r = anon
        .post_json("/api/v1/renew", &json!({ "csr_pem": bob_csr }))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (addr2, serial2) = check_issued(&r.json(), &bob_id, "lab", "bob-laptop");
    assert_eq!(addr2, addr);
    assert_ne!(serial2, serial1);
    let r = anon
        .post_json(
            "/api/v1/renew",
            &json!({ "csr_pem": bob_csr, "group": "lab" }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let renewed = r.json();
    let (_, stranger_csr) = node("stranger");
    let r = anon
        .post_json("/api/v1/renew", &json!({ "csr_pem": stranger_csr }))
        .await;
    assert_eq!(r.status, 403, "{}", r.body);

    // CA and CRL.
    let ca = anon.get("/api/v1/groups/lab/ca").await.json();
    assert_eq!(ca["ca_pem"], first["ca_pem"]);
    let crl = anon.get("/api/v1/groups/lab/crl").await.json();
    assert_eq!(crl["number"], 1);
    let parsed = Crl::from_pem_or_der(crl["crl_pem"].as_str().unwrap().as_bytes()).unwrap();
    let ca_cert =
        CaCertificate::from_pem_or_der(ca["ca_pem"].as_str().unwrap().as_bytes()).unwrap();
    parsed.verify(&ca_cert, SystemTime::now()).unwrap();
    let week = parsed
        .next_update()
        .unwrap()
        .duration_since(parsed.this_update())
        .unwrap();
    assert_eq!(week, Duration::from_secs(7 * 86_400));
    assert_eq!(
        crl["next_update"].as_str().unwrap(),
        vpn_pki::fmt_time(parsed.next_update().unwrap())
    );

    // Revocation: the CRL is re-signed with every certificate of bob's.
    let r = post_action(&mut alice, "/groups/lab/members/bob-laptop/revoke").await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(
        post_action(&mut alice, "/groups/lab/members/bob-laptop/revoke")
            .await
            .status,
        409
    );
    assert_eq!(
        post_action(&mut carol, "/groups/lab/members/carol-pc/revoke")
            .await
            .status,
        403,
        "a member cannot revoke"
    );
    let crl = anon.get("/api/v1/groups/lab/crl").await.json();
    assert_eq!(crl["number"], 2);
    let parsed = Crl::from_pem_or_der(crl["crl_pem"].as_str().unwrap().as_bytes()).unwrap();
    parsed.verify(&ca_cert, SystemTime::now()).unwrap();
    assert_eq!(parsed.entries().count(), 3);
    let cert = MemberCert::from_pem_or_der(renewed["certificate_pem"].as_str().unwrap().as_bytes())
        .unwrap();
    let err = vpn_pki::verify_member(
        cert.der(),
        &ca_cert,
        Some(&parsed),
        &bob_id.peer_id(),
        "lab",
        SystemTime::now(),
    )
    .unwrap_err();
    assert!(matches!(err, PkiError::Revoked { .. }), "{err}");
    let r = anon
        .post_json("/api/v1/renew", &json!({ "csr_pem": bob_csr }))
        .await;
    assert_eq!(r.status, 403, "revoked renew: {}", r.body);
    assert_eq!(bob.get("/groups/lab/blob").await.status, 403);

    // An administrator adds a node of their own like anyone else.
    assert!(ok_page(&mut alice, "/groups/lab")
        .await
        .contains("id=\"join-link\""));
    assert_eq!(
        web::join(&mut alice, "lab", "alice-gw", "gateway")
            .await
            .status,
        303
    );
    let ids = request_ids(&ok_page(&mut alice, "/groups/lab").await);
    let r = post_action(
        &mut alice,
        &format!("/groups/lab/requests/{}/approve", ids[0]),
    )
    .await;
    assert_eq!(r.status, 303);
    let page = ok_page(&mut alice, "/groups/lab").await;
    assert!(page.contains("<strong>administrator</strong>"), "{page}");
    assert!(blob_of(&ok_page(&mut alice, "/groups/lab/blob").await).is_some());

    // A denied request: no membership, no blob.
    let mut dan = user(s, "dan").await;
    assert_eq!(web::join(&mut dan, "lab", "dan-pc", "hi").await.status, 303);
    let ids = request_ids(&ok_page(&mut alice, "/groups/lab").await);
    let deny = format!("/groups/lab/requests/{}/deny", ids[0]);
    assert_eq!(post_action(&mut dan, &deny).await.status, 403);
    assert_eq!(post_action(&mut alice, &deny).await.status, 303);
    assert_eq!(post_action(&mut alice, &deny).await.status, 409);
    assert!(ok_page(&mut dan, "/groups")
        .await
        .contains("request denied"));
    assert_eq!(dan.get("/groups/lab").await.status, 403);
    assert_eq!(dan.get("/groups/lab/blob").await.status, 403);

    // Audit log: administrators only.
    let audit = ok_page(&mut alice, "/groups/lab/audit").await;
    for action in [
        "create-group",
        "request",
        "approve",
        "deny",
        "blob",
        "enroll",
        "renew",
        "revoke",
    ] {
        assert!(
            audit.contains(&format!("<td>{action}</td>")),
            "{action}: {audit}"
        );
    }
    assert!(!audit.contains("<script>"));
    assert_eq!(carol.get("/groups/lab/audit").await.status, 403);
    let member_view = ok_page(&mut carol, "/groups/lab").await;
    assert!(!member_view.contains("Pending requests"));
    assert!(!member_view.contains("id=\"revoke-"));

    // Settings reach the nodes.
    let boot = "/ip4/192.0.2.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";
    let csrf = web::csrf(&mut alice).await;
    let r = alice
        .post_form(
            "/groups/lab/settings",
            &[("csrf", &csrf), ("bootstrap", boot)],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let csrf = web::csrf(&mut carol).await;
    let r = carol
        .post_form(
            "/groups/lab/settings",
            &[("csrf", &csrf), ("bootstrap", "/ip4/1.2.3.4/tcp/1")],
        )
        .await;
    assert_eq!(r.status, 403);
    let r = anon
        .post_json("/api/v1/renew", &json!({ "csr_pem": carol_csr }))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["group"]["bootstrap"], json!([boot]));

    // Logout ends the session: the old cookie does not work again.
    let saved = bob.cookies.clone();
    let r = post_action(&mut bob, "/logout").await;
    assert_eq!((r.status, r.location()), (303, Some("/login")));
    bob.cookies = saved;
    assert_eq!(bob.get("/groups").await.status, 401, "replayed cookie");
    vec![secret, csecret, old]
}

/// A logged-in client for a new account.
pub async fn user(s: &Server, name: &str) -> Client {
    let mut c = s.client();
    let r = web::register(&mut c, name, &format!("{name}-password")).await;
    assert_eq!(r.status, 303, "register {name}: {}", r.body);
    c
}

/// Every kind of bad input gets a clear 4xx and changes nothing.
pub async fn bad_input(s: &Server) {
    let mut anon = s.client();
    let mut mallory = user(s, "mallory").await;
    let mut dave = user(s, "dave").await;
    let mut erin = user(s, "erin").await;
    assert_eq!(
        web::create_group(&mut mallory, "sec-a", "10.80.0.0/24", "30")
            .await
            .status,
        303
    );
    assert_eq!(
        web::create_group(&mut dave, "sec-b", "10.81.0.0/24", "30")
            .await
            .status,
        303
    );
    assert_eq!(
        web::join(&mut erin, "sec-b", "erin-pc", "please")
            .await
            .status,
        303
    );
    let dave_page = |p: String| p;
    let page = dave_page(ok_page(&mut dave, "/groups/sec-b").await);
    let erin_req = request_ids(&page).pop().expect("erin's request");

    // --- Malformed, oversize, wrong type, unknown fields -----------------
    let r = anon
        .request(
            "POST",
            "/api/v1/enroll",
            Some(("application/json", b"{\"secret\": ".to_vec())),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.error().contains("malformed JSON"), "{}", r.body);
    let r = anon
        .request(
            "POST",
            "/api/v1/enroll",
            Some(("text/plain", b"{}".to_vec())),
        )
        .await;
    assert_eq!(r.status, 415, "{}", r.body);
    r.error();
    let big = json!({ "secret": "x", "csr_pem": "A".repeat(70 * 1024) });
    let r = anon.post_json("/api/v1/enroll", &big).await;
    assert_eq!(r.status, 413, "{}", r.body);
    r.error();
    let r = anon
        .post_json(
            "/api/v1/enroll",
            &json!({ "secret": "x", "csr_pem": "y", "admin": true }),
        )
        .await;
    assert_eq!(r.status, 400, "unknown field: {}", r.body);
    let r = anon
        .post_json("/api/v1/enroll", &json!({ "secret": "x" }))
        .await;
    assert_eq!(r.status, 400, "missing field: {}", r.body);
    let r = anon.post_json("/api/v1/enroll", &json!([1, 2])).await;
    assert_eq!(r.status, 400);
    let r = anon.post_json("/api/v1/renew", &json!({ "csr_pem": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n" })).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let big_form = "x".repeat(70 * 1024);
    let csrf = web::csrf(&mut erin).await;
    let r = erin
        .post_form(
            "/groups/sec-b/join",
            &[("csrf", &csrf), ("node_name", "n"), ("reason", &big_form)],
        )
        .await;
    assert_eq!(r.status, 413, "oversize form");
    let r = anon.get("/api/v1/nope").await;
    assert_eq!(r.status, 404);
    r.error();

    // --- Unknown group -----------------------------------------------------
    assert_eq!(anon.get("/api/v1/groups/nope/ca").await.status, 404);
    let r = anon.get("/api/v1/groups/nope/crl").await;
    assert_eq!(r.status, 404);
    assert!(r.error().contains("nope"));
    assert_eq!(mallory.get("/groups/nope").await.status, 404);
    assert_eq!(mallory.get("/groups/nope/join").await.status, 404);
    assert_eq!(
        post_action(&mut mallory, "/groups/nope/requests/1/approve")
            .await
            .status,
        404
    );

    // --- Cross-group actions: mallory administers sec-a, not sec-b --------
    let approve_b = format!("/groups/sec-b/requests/{erin_req}/approve");
    assert_eq!(post_action(&mut mallory, &approve_b).await.status, 403);
    assert_eq!(
        post_action(
            &mut mallory,
            &format!("/groups/sec-b/requests/{erin_req}/deny")
        )
        .await
        .status,
        403
    );
    let via_a = format!("/groups/sec-a/requests/{erin_req}/approve");
    assert_eq!(
        post_action(&mut mallory, &via_a).await.status,
        404,
        "request of another group"
    );
    assert_eq!(mallory.get("/groups/sec-b").await.status, 403);
    assert_eq!(mallory.get("/groups/sec-b/audit").await.status, 403);
    assert_eq!(
        post_action(&mut mallory, "/groups/sec-b/members/erin-pc/revoke")
            .await
            .status,
        403
    );
    let csrf = web::csrf(&mut mallory).await;
    let r = mallory
        .post_form(
            "/groups/sec-b/settings",
            &[("csrf", &csrf), ("bootstrap", "")],
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(erin.get("/groups/sec-a").await.status, 403);
    // Still pending, nothing changed in sec-b.
    let page = ok_page(&mut dave, "/groups/sec-b").await;
    assert_eq!(request_ids(&page), vec![erin_req.clone()]);
    let audit = ok_page(&mut dave, "/groups/sec-b/audit").await;
    assert!(!audit.contains("mallory"), "{audit}");

    // --- Forged and replayed cookies, CSRF --------------------------------
    let mut forged = s.client();
    forged.cookies.insert("gv_session".into(), "A".repeat(43));
    assert_eq!(forged.get("/groups").await.status, 401);
    let r = forged
        .post_form(
            "/groups",
            &[
                ("csrf", "x"),
                ("name", "forged"),
                ("range", "10.9.0.0/24"),
                ("validity_days", "5"),
            ],
        )
        .await;
    assert_eq!(r.status, 401);
    forged
        .cookies
        .insert("gv_session".into(), "' OR '1'='1".into());
    assert_eq!(forged.get("/groups").await.status, 401);
    let r = mallory
        .post_form(
            "/groups",
            &[
                ("name", "nocsrf"),
                ("range", "10.9.0.0/24"),
                ("validity_days", "5"),
            ],
        )
        .await;
    assert_eq!(r.status, 403, "missing csrf");
    let r = mallory
        .post_form(
            "/groups",
            &[
                ("csrf", "wrong"),
                ("name", "nocsrf"),
                ("range", "10.9.0.0/24"),
                ("validity_days", "5"),
            ],
        )
        .await;
    assert_eq!(r.status, 403, "wrong csrf");
    let csrf_dave = web::csrf(&mut dave).await;
    let r = mallory
        .post_form(
            "/groups",
            &[
                ("csrf", &csrf_dave),
                ("name", "nocsrf"),
                ("range", "10.9.0.0/24"),
                ("validity_days", "5"),
            ],
        )
        .await;
    assert_eq!(r.status, 403, "another session's csrf");
    assert_eq!(
        mallory.get("/groups/nocsrf").await.status,
        404,
        "not created"
    );
    let mut fresh = s.client();
    let r = fresh
        .post_form(
            "/login",
            &[
                ("csrf", "x"),
                ("username", "dave"),
                ("password", "dave-password"),
            ],
        )
        .await;
    assert_eq!(r.status, 403, "login without the csrf cookie");

    // --- SQL metacharacters in every field --------------------------------
    let sql = "x' OR '1'='1'; DROP TABLE users;--";
    let r = anon
        .post_json(
            "/api/v1/accounts",
            &json!({ "username": sql, "password": "password-1" }),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = anon
        .post_json(
            "/api/v1/accounts",
            &json!({ "username": "quoted", "password": sql }),
        )
        .await;
    assert_eq!(r.status, 201, "a password may hold anything: {}", r.body);
    let mut quoted = s.client();
    assert_eq!(web::login(&mut quoted, "quoted", sql).await.status, 303);
    let mut q2 = s.client();
    assert_eq!(web::login(&mut q2, sql, sql).await.status, 401);
    let mut q3 = s.client();
    assert_eq!(web::register(&mut q3, sql, "password-1").await.status, 400);
    for (name, range, days) in [
        (sql, "10.9.0.0/24", "5"),
        ("okname", "10.9.0.0/24'; DROP TABLE vpn_groups;--", "5"),
        ("okname", "10.9.0.0/24", "5; DROP TABLE vpn_groups"),
    ] {
        let r = web::create_group(&mut mallory, name, range, days).await;
        assert_eq!(r.status, 400, "{name} {range} {days}: {}", r.body);
    }
    assert_eq!(mallory.get("/groups/okname").await.status, 404);
    let r = web::join(&mut mallory, "sec-b", sql, "why").await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = web::join(&mut mallory, "sec-b", "mal-pc", sql).await;
    assert_eq!(r.status, 303, "a reason may hold anything");
    let page = ok_page(&mut dave, "/groups/sec-b").await;
    assert!(
        page.contains("x&#39; OR &#39;1&#39;=&#39;1&#39;; DROP TABLE users;--")
            || page.contains("x' OR '1'='1'; DROP TABLE users;--"),
        "{page}"
    );
    let csrf = web::csrf(&mut dave).await;
    let r = dave
        .post_form(
            "/groups/sec-b/settings",
            &[("csrf", &csrf), ("bootstrap", sql)],
        )
        .await;
    assert_eq!(r.status, 400);
    for path in ["/groups/sec-b'%20OR%20'1'='1", "/groups/sec-b%27--/audit"] {
        assert_eq!(dave.get(path).await.status, 404, "{path}");
    }
    let r = post_action(&mut dave, "/groups/sec-b/requests/1%20OR%201=1/approve").await;
    assert_eq!(r.status, 404);
    let r = post_action(&mut dave, "/groups/sec-b/members/x'%20OR%20'1'='1/revoke").await;
    assert_eq!(r.status, 404);
    let (_, csr) = node("sqlnode");
    assert_eq!(enroll(&mut anon, "' OR 1=1 --", &csr).await.status, 401);
    assert_eq!(enroll(&mut anon, "x", sql).await.status, 400);
    let r = anon
        .post_json("/api/v1/renew", &json!({ "csr_pem": csr, "group": sql }))
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(
        anon.get("/api/v1/groups/sec-b'%20OR%20'1'='1/crl")
            .await
            .status,
        404
    );
    // Everything still there.
    let groups = ok_page(&mut dave, "/groups").await;
    for g in ["sec-a", "sec-b"] {
        assert!(
            groups.contains(&format!("href=\"/groups/{g}\"")),
            "{groups}"
        );
    }
    assert_eq!(
        web::login(&mut s.client(), "erin", "erin-password")
            .await
            .status,
        303
    );

    // --- A full address range: 503, and the secret stays usable ---------
    assert_eq!(
        web::create_group(&mut mallory, "tiny", "10.99.0.0/30", "30")
            .await
            .status,
        303
    );
    let out = s.admin(&["add-node", "tiny", "t", "--count", "3"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secrets: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| decode_blob(l)["secret"].as_str().unwrap().to_owned())
        .collect();
    for (i, secret) in secrets.iter().enumerate() {
        let (_, csr) = node(&format!("t-{}", i + 1));
        let r = enroll(&mut anon, secret, &csr).await;
        let want = if i < 2 { 200 } else { 503 };
        assert_eq!(r.status, want, "t-{}: {}", i + 1, r.body);
        if i == 2 {
            assert_eq!(
                enroll(&mut anon, secret, &csr).await.status,
                503,
                "not consumed"
            );
        }
    }
    let groups = ok_page(&mut erin, "/groups").await;
    assert!(groups.contains("href=\"/groups/tiny\""));
    assert!(
        !groups.contains("10.99.0.0/30"),
        "ranges of other groups are not shown"
    );

    // --- Login rate limits (per username) --------------------------------
    let mut guesser = s.client();
    for _ in 0..5 {
        assert_eq!(
            web::login(&mut guesser, "erin", "wrong-password")
                .await
                .status,
            401
        );
    }
    let r = web::login(&mut guesser, "erin", "erin-password").await;
    assert_eq!(r.status, 429, "locked even with the right password");
    let mut other = s.client();
    assert_eq!(
        web::login(&mut other, "dave", "dave-password").await.status,
        303
    );
}

/// Kills the server (SIGKILL) while enrolments are in flight, restarts it
/// on the same data: every enrolment that was answered 200 is still
/// there (its secret is used), none is half done, addresses stay unique.
pub async fn kill_during_enrolments(mut s: Server) {
    let out = s.admin(&["create-user", "ops"], Some("ops-password\n"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = s.admin(
        &[
            "create-group",
            "crash",
            "--range",
            "10.90.0.0/24",
            "--admin",
            "ops",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = s.admin(&["add-node", "crash", "n", "--count", "40"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nodes: Vec<(String, String, NodeIdentity)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let b = decode_blob(l);
            assert_eq!(b["server_cert_sha256"], s.sha256.as_str());
            let name = b["node_name"].as_str().unwrap().to_owned();
            let (id, csr) = node(&name);
            (b["secret"].as_str().unwrap().to_owned(), csr, id)
        })
        .collect();
    assert_eq!(nodes.len(), 40);

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for (i, (secret, csr, _)) in nodes.iter().enumerate() {
        let mut c = s.client();
        let body = json!({ "secret": secret, "csr_pem": csr });
        let tx = tx.clone();
        tokio::spawn(async move {
            let r = c
                .try_request(
                    "POST",
                    "/api/v1/enroll",
                    Some(("application/json", serde_json::to_vec(&body).unwrap())),
                )
                .await;
            let _ = tx.send((i, r));
        });
    }
    drop(tx);
    // Kill once a few have been answered, with the rest in flight.
    let mut answered = Vec::new();
    while answered.len() < 5 {
        answered.push(rx.recv().await.expect("answers"));
    }
    s.kill9();
    while let Some(a) = rx.recv().await {
        answered.push(a);
    }
    let mut ok_before = Vec::new();
    let mut addresses = std::collections::HashSet::new();
    for (i, r) in &answered {
        if let Ok(resp) = r {
            if resp.status == 200 {
                let name = format!("n-{}", i + 1);
                let (addr, _) = check_issued(&resp.json(), &nodes[*i].2, "crash", &name);
                assert!(addresses.insert(addr), "duplicate address");
                ok_before.push(*i);
            } else {
                panic!("enrolment {i} answered {}: {}", resp.status, resp.body);
            }
        }
    }
    assert!(ok_before.len() >= 5, "{ok_before:?}");

    let s2 = Server::start_in(&s.data_dir, Some(&s.database), "127.0.0.1:0");
    assert_eq!(s2.sha256, s.sha256, "the TLS certificate is kept");
    let mut c = s2.client();
    let mut enrolled_after = 0;
    for (i, (secret, csr, id)) in nodes.iter().enumerate() {
        let r = enroll(&mut c, secret, csr).await;
        if ok_before.contains(&i) {
            assert_eq!(r.status, 409, "committed enrolment {i} lost: {}", r.body);
        } else {
            match r.status {
                // Not committed before the kill: enrols now.
                200 => {
                    let (addr, _) = check_issued(&r.json(), id, "crash", &format!("n-{}", i + 1));
                    assert!(addresses.insert(addr), "duplicate address");
                    enrolled_after += 1;
                }
                // Committed, but the answer was lost with the process.
                409 => {}
                other => panic!("enrolment {i} after restart: {other} {}", r.body),
            }
        }
    }
    assert!(
        s2.stderr().is_empty() || !s2.stderr().contains("panicked"),
        "{}",
        s2.stderr()
    );
    eprintln!(
        "kill -9: {} answered before, {} enrolled after restart",
        ok_before.len(),
        enrolled_after
    );
    drop(s2);
    drop(s);
}
