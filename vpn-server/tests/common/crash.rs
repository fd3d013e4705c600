//! Concurrent enrolments, and `kill -9` while enrolments are in flight.

use serde_json::json;
use vpn_pki::NodeIdentity;

use super::cases::{check_issued, decode_blob, enroll, node};
use super::server::Server;

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

/// 40 enrolments into one group at once: all succeed, with distinct
/// addresses (no lost races, no 5xx).
pub async fn concurrent_enrolments(s: &Server) {
    let out = s.admin(&["create-user", "conc"], Some("conc-password\n"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = s.admin(
        &[
            "create-group",
            "conc",
            "--range",
            "10.91.0.0/24",
            "--admin",
            "conc",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = s.admin(&["add-node", "conc", "c", "--count", "40"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut tasks = tokio::task::JoinSet::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let b = decode_blob(line);
        let name = b["node_name"].as_str().unwrap().to_owned();
        let secret = b["secret"].as_str().unwrap().to_owned();
        let mut c = s.client();
        tasks.spawn(async move {
            let (id, csr) = node(&name);
            let r = enroll(&mut c, &secret, &csr).await;
            assert_eq!(r.status, 200, "{name}: {}", r.body);
            check_issued(&r.json(), &id, "conc", &name).0
        });
    }
    let mut addresses = std::collections::HashSet::new();
    while let Some(a) = tasks.join_next().await {
        assert!(addresses.insert(a.unwrap()), "duplicate address");
    }
    assert_eq!(addresses.len(), 40);
}
