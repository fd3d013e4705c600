//! Driving the web UI like a browser without JavaScript: GET a page, take
//! its csrf field, POST the form.

use super::client::{csrf_of, Client, Resp};

pub async fn register(c: &mut Client, user: &str, pw: &str) -> Resp {
    let page = c.get("/register").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("id=\"register-form\""));
    let csrf = csrf_of(&page.body);
    c.post_form(
        "/register",
        &[
            ("csrf", &csrf),
            ("username", user),
            ("password", pw),
            ("password2", pw),
        ],
    )
    .await
}

pub async fn login(c: &mut Client, user: &str, pw: &str) -> Resp {
    let page = c.get("/login").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("id=\"login-form\""));
    let csrf = csrf_of(&page.body);
    c.post_form(
        "/login",
        &[("csrf", &csrf), ("username", user), ("password", pw)],
    )
    .await
}

/// The session's CSRF token (from the groups page).
pub async fn csrf(c: &mut Client) -> String {
    let p = c.get("/groups").await;
    assert_eq!(p.status, 200, "{}", p.body);
    csrf_of(&p.body)
}

pub async fn create_group(c: &mut Client, name: &str, range: &str, days: &str) -> Resp {
    let csrf = csrf(c).await;
    c.post_form(
        "/groups",
        &[
            ("csrf", &csrf),
            ("name", name),
            ("range", range),
            ("validity_days", days),
        ],
    )
    .await
}

pub async fn join(c: &mut Client, group: &str, node: &str, reason: &str) -> Resp {
    let page = c.get(&format!("/groups/{group}/join")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("id=\"join-form\""));
    let csrf = csrf_of(&page.body);
    c.post_form(
        &format!("/groups/{group}/join"),
        &[("csrf", &csrf), ("node_name", node), ("reason", reason)],
    )
    .await
}

/// Ids of the pending requests on the group page (`approve-<id>` forms).
pub fn request_ids(html: &str) -> Vec<String> {
    html.match_indices("id=\"approve-")
        .map(|(i, m)| html[i + m.len()..].split('"').next().unwrap().to_owned())
        .collect()
}

pub async fn post_action(c: &mut Client, path: &str) -> Resp {
    let csrf = csrf(c).await;
    c.post_form(path, &[("csrf", &csrf)]).await
}
