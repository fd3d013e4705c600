//! Every kind of bad input gets a clear 4xx and changes nothing.

use serde_json::json;

use super::cases::{decode_blob, enroll, node, ok_page, user};
use super::server::Server;
use super::web::{self, post_action, request_ids};

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
    let r = anon.get("/api/v1/enroll").await;
    assert_eq!(r.status, 405);
    r.error();
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

    // --- A revoked member's blob ------------------------------------------
    let out = s.admin(&["add-node", "sec-a", "revoked-1"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let secret = decode_blob(text.trim())["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = post_action(&mut mallory, "/groups/sec-a/members/revoked-1/revoke").await;
    assert_eq!(r.status, 303, "{}", r.body);
    let (_, csr) = node("revoked-1");
    let r = enroll(&mut anon, &secret, &csr).await;
    assert_eq!(r.status, 403, "revoked secret: {}", r.body);
    assert!(r.error().contains("revoked"), "{}", r.body);

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
