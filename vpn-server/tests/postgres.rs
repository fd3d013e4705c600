//! The same API and web UI scenarios as `sqlite.rs`, against a private
//! PostgreSQL cluster this test starts (and installs if missing).

mod common;

use common::{bad_input, cases, crash, pg::Postgres, server::Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_and_api_on_postgres() {
    let pg = Postgres::start();
    let s = Server::start(Some(&pg.url()));
    let _ = cases::full_flow(&s).await;
    bad_input::bad_input(&s).await;
    crash::concurrent_enrolments(&s).await;
    crash::kill_during_enrolments(s).await;
    drop(pg);
}
