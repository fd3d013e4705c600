//! Shared test helpers: the real server binary, a pinned HTTPS client, a
//! private PostgreSQL cluster, and the scenarios both databases run.
#![allow(dead_code)]

pub mod bad_input;
pub mod cases;
pub mod client;
pub mod crash;
pub mod pg;
pub mod server;
pub mod web;
