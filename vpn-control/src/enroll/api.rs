//! The group server's JSON API (`vpn_api::messages`, shared with the
//! server), plus how the client reads the server's times.

use std::time::SystemTime;

pub use vpn_api::messages::*;

use super::EnrollError;

/// Parses an RFC 3339 time from the server.
pub fn parse_time(what: &str, s: &str) -> Result<SystemTime, EnrollError> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(SystemTime::from)
        .map_err(|e| EnrollError::Protocol(format!("{what} {s:?} is not an RFC 3339 time: {e}")))
}
