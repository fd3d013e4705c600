//! The group server's web UI in real headless Chromium (Debian's chromium
//! and chromium-driver through WebDriver), against a real `vpn-server` on
//! loopback with SQLite:
//!
//! - an administrator registers and creates a group, a second account asks
//!   to join with a reason, the administrator approves, the member copies
//!   the blob from the page; `vpn-control join` with that blob obtains a
//!   certificate that `openssl verify` accepts;
//! - a member cannot approve a request, neither through the browser nor
//!   with a crafted form post carrying its own session and CSRF token.
//!
//! `GROUPVPN_SCREENSHOTS=1` saves the main pages to `docs/screenshots/`.

mod server_common;

use std::process::Command;
use std::time::Duration;

use server_common::*;
use vpn_control::enroll::Blob;
use vpn_tests::{vpn_control_bin, wait_until};

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn browser_enrolment_flow_then_join_and_openssl_verify() {
    let srv = Server::start_sqlite("srv-browser");
    let driver = ChromeDriver::start();
    let admin = driver.session();
    let member = driver.session();
    let shots = screenshot_dir();

    register(&admin, &srv, "alice", Some("register"));
    create_group(&admin, &srv, "lab", "10.77.0.0/24");
    admin.goto(&srv.at("/groups"));
    admin.screenshot_to(&shots, "groups");

    register(&member, &srv, "bob", None);
    let reason = "I maintain the lab's build machine";
    request_join(&member, &srv, "lab", "bob-laptop", reason);
    member.screenshot_to(&shots, "join-requested");

    // The administrator sees the pending request with its reason.
    let ids = pending_request_ids(&admin, &srv, "lab");
    assert_eq!(
        ids.len(),
        1,
        "pending requests: {ids:?}\n{}",
        admin.body_text()
    );
    let page = admin.body_text();
    assert!(
        page.contains("bob-laptop") && page.contains(reason),
        "{page}"
    );
    admin.screenshot_to(&shots, "group-pending-request");

    approve(&admin, &srv, "lab", &ids[0]);
    assert!(
        pending_request_ids(&admin, &srv, "lab").is_empty(),
        "request still pending after approval: {}",
        admin.body_text()
    );
    assert!(admin.body_text().contains("bob-laptop"));
    admin.screenshot_to(&shots, "group-members");

    // The member downloads the blob.
    let blob_text = blob(&member, &srv, "lab");
    member.screenshot_to(&shots, "blob");
    let b = Blob::parse(&blob_text).unwrap_or_else(|e| panic!("blob {blob_text:?}: {e}"));
    assert_eq!(b.group, "lab");
    assert_eq!(b.node_name, "bob-laptop");
    assert_eq!(b.server_cert_sha256, srv.server.tls_sha256());

    // vpn-control join with it.
    let node = srv.tmp.path().join("node");
    let bin = vpn_control_bin().unwrap();
    let (ok, out) = run(Command::new(&bin)
        .arg("join")
        .arg(&blob_text)
        .arg("--dir")
        .arg(&node));
    assert!(ok, "vpn-control join failed:\n{out}");
    assert!(out.contains("joined group \"lab\""), "{out}");
    for f in [
        "node.key",
        "node.crt",
        "ca.crt",
        "ca.crl",
        "server.json",
        "groupvpn.toml",
    ] {
        assert!(node.join(f).is_file(), "{f} missing after join:\n{out}");
    }

    // openssl accepts the certificate (and the CRL, which does not list it).
    let (ok, out) = run(Command::new("openssl")
        .args(["verify", "-CAfile", "ca.crt", "node.crt"])
        .current_dir(&node));
    assert!(ok && out.contains("node.crt: OK"), "openssl verify:\n{out}");
    let (ok, out) = run(Command::new("openssl")
        .args([
            "verify",
            "-crl_check",
            "-CAfile",
            "ca.crt",
            "-CRLfile",
            "ca.crl",
            "node.crt",
        ])
        .current_dir(&node));
    assert!(
        ok && out.contains("node.crt: OK"),
        "openssl verify -crl_check:\n{out}"
    );
    // ... and so does the daemon's own configuration check.
    let (ok, out) = run(Command::new(&bin)
        .args(["check", "-c"])
        .arg(node.join("groupvpn.toml")));
    assert!(ok, "vpn-control check of the generated config:\n{out}");

    // The blob is single use.
    let other = srv.tmp.path().join("node2");
    let (ok, out) = run(Command::new(&bin)
        .arg("join")
        .arg(&blob_text)
        .arg("--dir")
        .arg(&other));
    assert!(
        !ok && out.contains("409"),
        "second join with the same blob:\n{out}"
    );
    assert!(!other.join("node.crt").exists());

    // Renewal without a person.
    let (ok, out) = run(Command::new(&bin)
        .args(["renew", "--force", "--dir"])
        .arg(&node));
    assert!(
        ok && out.contains("renewed"),
        "vpn-control renew --force:\n{out}"
    );

    // The audit log shows the approval and the issuance.
    admin.goto(&srv.at("/groups/lab/audit"));
    let audit = admin.body_text();
    assert!(audit.contains("bob-laptop"), "audit log:\n{audit}");
    admin.screenshot_to(&shots, "audit");
}

#[test]
fn member_cannot_approve_in_browser_or_by_crafted_post() {
    let srv = Server::start_sqlite("srv-roles");
    let driver = ChromeDriver::start();
    let admin = driver.session();
    let carol = driver.session();
    let dave = driver.session();

    register(&admin, &srv, "admin", None);
    create_group(&admin, &srv, "ops", "10.78.0.0/24");
    register(&carol, &srv, "carol", None);
    request_join(&carol, &srv, "ops", "carol-pc", "on call this week");
    let ids = pending_request_ids(&admin, &srv, "ops");
    assert_eq!(ids.len(), 1, "{}", admin.body_text());
    approve(&admin, &srv, "ops", &ids[0]);
    register(&dave, &srv, "dave", None);
    request_join(&dave, &srv, "ops", "dave-pc", "new here");
    let pending = pending_request_ids(&admin, &srv, "ops");
    assert_eq!(pending.len(), 1, "{}", admin.body_text());
    let id = &pending[0];

    // Carol (a member) sees no approve buttons.
    carol.goto(&srv.at("/groups/ops"));
    assert!(
        carol.find_all("form[id^=\"approve-\"]").is_empty(),
        "a member sees approve forms:\n{}",
        carol.source()
    );

    // Through the browser: a form injected into carol's page, with her CSRF token.
    carol.goto(&srv.at("/groups"));
    let token = csrf_token(&carol);
    let action = format!("/groups/ops/requests/{id}/approve");
    carol.script(&format!(
        "const f = document.createElement('form'); f.method = 'post'; f.action = {action:?};
         const i = document.createElement('input'); i.type = 'hidden'; i.name = 'csrf'; i.value = {token:?};
         f.appendChild(i); document.body.appendChild(f); f.submit();"
    ));
    wait_until("the injected form to load", Duration::from_secs(20), || {
        carol.url().contains("/approve").then_some(())
    })
    .unwrap();

    // A crafted form post with carol's own session cookie and CSRF token.
    let cookie = carol.cookie_header();
    assert!(!cookie.is_empty(), "carol has no session cookie");
    let body = format!("csrf={}", form_encode(&token));
    let r = srv
        .client()
        .request(
            "POST",
            &action,
            &[("Cookie", &cookie), ("Origin", srv.server.url())],
            Some(("application/x-www-form-urlencoded", body.as_bytes())),
        )
        .unwrap();
    assert_eq!(r.status, 403, "crafted approve by a member: {}", r.text());

    // Nothing changed: dave's request is still pending, dave has no blob.
    assert_eq!(pending_request_ids(&admin, &srv, "ops"), vec![id.clone()]);
    dave.goto(&srv.at("/groups/ops/blob"));
    assert!(
        dave.find("pre#blob").is_none(),
        "dave got a blob:\n{}",
        dave.body_text()
    );
}

/// `application/x-www-form-urlencoded` value encoding.
fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
