//! Configuration blobs: `groupvpn1:` + base64url (no padding) of JSON with
//! the server URL, the pinned TLS certificate hash, the group, the node
//! name and a single-use secret (stored only as its SHA-256).

pub use vpn_api::{Blob, BLOB_PREFIX as PREFIX};

use crate::db::{audit, members};
use crate::error::{AppError, AppResult};
use crate::ops::Actor;
use crate::state::AppState;

/// The stored form of a secret.
pub fn secret_hash(secret: &str) -> String {
    crate::crypto::sha256_hex(secret.as_bytes())
}

/// Gives the approved, not yet enrolled member `member_id` a fresh secret
/// (an earlier unused blob stops working) and returns its blob.
pub async fn issue_blob(
    st: &AppState,
    actor: &Actor,
    group: &crate::db::groups::Group,
    member: &members::Member,
) -> AppResult<String> {
    let secret = crate::crypto::token()?;
    let hash = secret_hash(&secret);
    crate::in_tx!(&st.db, |tx| {
        if !members::set_secret(&mut tx, member.id, &hash).await? {
            return Err(AppError::Conflict(format!(
                "{} is already enrolled or revoked: no new blob",
                member.node_name
            )));
        }
        audit::add(
            &mut tx,
            Some(group.id),
            actor.name(),
            "blob",
            &format!("new enrolment secret for {}", member.node_name),
        )
        .await?;
        Ok(())
    })?;
    Ok(Blob {
        v: 1,
        server: st.public_url.clone(),
        server_cert_sha256: st.tls_sha256.clone(),
        group: group.name.clone(),
        node_name: member.node_name.clone(),
        secret,
    }
    .encode())
}

/// Approves nodes without accounts (admin command line) and returns
/// their blobs, all in one transaction.
pub async fn add_nodes(
    st: &AppState,
    group: &crate::db::groups::Group,
    names: &[String],
) -> AppResult<Vec<String>> {
    let mut secrets = Vec::with_capacity(names.len());
    for n in names {
        vpn_pki::validate_node_name(n).map_err(|e| AppError::BadRequest(e.to_string()))?;
        secrets.push(crate::crypto::token()?);
    }
    crate::in_tx!(&st.db, |tx| {
        let now = crate::db::now_secs();
        for (name, secret) in names.iter().zip(&secrets) {
            let id = members::create_member(&mut tx, group.id, None, name, now).await?;
            members::set_secret(&mut tx, id, &secret_hash(secret)).await?;
            audit::add(
                &mut tx,
                Some(group.id),
                Actor::Cli.name(),
                "approve",
                &format!("{name} (no account); new enrolment secret"),
            )
            .await?;
        }
        Ok(())
    })?;
    Ok(names
        .iter()
        .zip(secrets)
        .map(|(name, secret)| {
            Blob {
                v: 1,
                server: st.public_url.clone(),
                server_cert_sha256: st.tls_sha256.clone(),
                group: group.name.clone(),
                node_name: name.clone(),
                secret,
            }
            .encode()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_the_shared_parser() {
        let b = Blob {
            v: 1,
            server: "https://127.0.0.1:8443".into(),
            server_cert_sha256: "ab".repeat(32),
            group: "lab".into(),
            node_name: "alice".into(),
            secret: crate::crypto::token().unwrap(),
        };
        let t = b.encode();
        assert!(t.starts_with(PREFIX));
        assert!(!t.contains('='));
        assert_eq!(Blob::parse(&t).unwrap(), b);
        assert!(Blob::parse("groupvpn2:xx").is_err());
        assert!(Blob::parse("groupvpn1:!!").is_err());
    }
}
