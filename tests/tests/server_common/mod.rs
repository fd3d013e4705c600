//! Shared by the group server tests (`server_*.rs`): a server on loopback
//! with a temporary SQLite data folder, and the browser steps of the web UI
//! (`.work/server-contract.md`: paths, form ids and field names).
#![allow(dead_code, unused_imports)] // each test crate uses a different subset

pub mod webdriver;

use std::path::PathBuf;
use std::time::Duration;

pub use vpn_tests::server::VpnServer;
pub use vpn_tests::TempDir;
pub use webdriver::{ChromeDriver, Element, Session};

/// Password used for every test account (long enough for any policy).
pub const PASSWORD: &str = "correct horse battery staple 42";

/// A server with its scratch folder (dropped in this order).
pub struct Server {
    pub server: VpnServer,
    pub tmp: TempDir,
}

impl Server {
    /// `vpn-server` on 127.0.0.1 with SQLite in a fresh folder.
    pub fn start_sqlite(tag: &str) -> Self {
        let tmp = TempDir::new(tag).unwrap();
        let server = VpnServer::start("vpn-server", &tmp.path().join("data"), None, &[])
            .unwrap_or_else(|e| panic!("starting vpn-server: {e}"));
        Self { server, tmp }
    }

    /// `https://127.0.0.1:PORT` + `path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }

    /// A pinned HTTPS client for crafted requests (the pin from the ready line).
    pub fn client(&self) -> vpn_control::enroll::PinnedClient {
        let pin = vpn_control::enroll::parse_fingerprint(self.server.tls_sha256()).unwrap();
        vpn_control::enroll::PinnedClient::new(self.server.url(), pin)
            .unwrap()
            .with_timeout(Duration::from_secs(30))
    }
}

/// Where committed screenshots go (`docs/screenshots/`).
pub fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("docs")
        .join("screenshots")
}

/// The flash message(s) of the current page.
pub fn flash(s: &Session<'_>) -> String {
    s.find_all("p.flash")
        .iter()
        .map(|e| s.text(e))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Whether the page shows a signed-in user (a logout form/button).
fn signed_in(s: &Session<'_>) -> bool {
    s.find("form[action=\"/logout\"]").is_some()
}

/// Registers `user` and ends signed in (logging in if registration does
/// not do it).
pub fn register(s: &Session<'_>, srv: &Server, user: &str, shot: Option<&str>) {
    s.goto(&srv.at("/register"));
    s.expect("#register-form");
    if let Some(name) = shot {
        s.screenshot_to(&screenshot_dir(), name);
    }
    s.submit_form(
        "register-form",
        &[
            ("username", user),
            ("password", PASSWORD),
            ("password2", PASSWORD),
        ],
    );
    if !signed_in(s) {
        login(s, srv, user);
    }
    assert!(
        signed_in(s),
        "{user} is not signed in after registering; flash: {}; page:\n{}",
        flash(s),
        s.body_text()
    );
}

/// Logs `user` in.
pub fn login(s: &Session<'_>, srv: &Server, user: &str) {
    s.goto(&srv.at("/login"));
    s.submit_form("login-form", &[("username", user), ("password", PASSWORD)]);
}

/// Creates group `name` (the signed-in user becomes its administrator).
pub fn create_group(s: &Session<'_>, srv: &Server, name: &str, range: &str) {
    s.goto(&srv.at("/groups"));
    s.submit_form(
        "create-group-form",
        &[("name", name), ("range", range), ("validity_days", "90")],
    );
    s.goto(&srv.at(&format!("/groups/{name}")));
    assert!(
        s.body_text().contains(name),
        "group page of {name} after creating it:\n{}",
        s.body_text()
    );
}

/// Asks to join `group` as node `node` with `reason`.
pub fn request_join(s: &Session<'_>, srv: &Server, group: &str, node: &str, reason: &str) {
    s.goto(&srv.at(&format!("/groups/{group}/join")));
    s.submit_form("join-form", &[("node_name", node), ("reason", reason)]);
}

/// The ids of the pending requests on the group page (`approve-<id>` forms).
pub fn pending_request_ids(s: &Session<'_>, srv: &Server, group: &str) -> Vec<String> {
    s.goto(&srv.at(&format!("/groups/{group}")));
    s.find_all("form[id^=\"approve-\"]")
        .iter()
        .filter_map(|f| s.attr(f, "id"))
        .filter_map(|id| id.strip_prefix("approve-").map(str::to_owned))
        .collect()
}

/// Clicks "approve" for request `id` on the group page.
pub fn approve(s: &Session<'_>, srv: &Server, group: &str, id: &str) {
    s.goto(&srv.at(&format!("/groups/{group}")));
    let form = format!("approve-{id}");
    let button = s
        .find(&format!("#{form} [type=submit]"))
        .or_else(|| s.find(&format!("#{form} button")))
        .unwrap_or_else(|| panic!("no approve button for request {id}:\n{}", s.body_text()));
    s.click_and_wait(&button);
}

/// The blob from the member's blob page (`<pre id="blob">`).
pub fn blob(s: &Session<'_>, srv: &Server, group: &str) -> String {
    s.goto(&srv.at(&format!("/groups/{group}/blob")));
    let pre = s.expect("pre#blob");
    s.text(&pre).trim().to_owned()
}

/// The hidden CSRF token of the first form on the page that has one.
pub fn csrf_token(s: &Session<'_>) -> String {
    let field = s.expect("input[name=\"csrf\"]");
    s.attr(&field, "value")
        .unwrap_or_else(|| panic!("csrf field without a value on {}", s.url()))
}
