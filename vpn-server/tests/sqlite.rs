//! The API and web UI against the real `vpn-server` binary on loopback
//! TLS with SQLite (the default database).

mod common;

use common::{cases, server::Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_and_api_on_sqlite() {
    let s = Server::start(None);
    cases::full_flow(&s).await;
    cases::bad_input(&s).await;
    cases::kill_during_enrolments(s).await;
}
