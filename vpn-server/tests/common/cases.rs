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

pub async fn ok_page(c: &mut Client, path: &str) -> String {
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
            audit.contains(&format!("data-label=\"What\">{action}</td>")),
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
