//! GroupVPN group server (see `docs/group-server.md`): accounts, groups,
//! join requests and approvals in a server-rendered web UI; configuration
//! blobs; certificate enrolment, renewal, CA and CRL distribution over a
//! JSON API; all over HTTPS. Storage is SQLite or PostgreSQL (one schema,
//! `migrations/`). Certificates and CRLs are made by `vpn-pki`.

pub mod admin;
pub mod api;
pub mod app;
pub mod config;
pub mod conn;
pub mod crypto;
pub mod db;
pub mod error;
pub mod ops;
pub mod ratelimit;
pub mod serve;
pub mod state;
pub mod tls;
pub mod web;
