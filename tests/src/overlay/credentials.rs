//! Group credentials (CA, node identities, member certificates) made with
//! the real offline CLI: `vpn-control ca init`, `cert identity` and
//! `cert sign` (docs/pki.md). Kept apart from the lab so that another
//! source (enrolment with a group server) can replace it.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{run_checked, Error, Result};

/// The address a member's certificate grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberAddress {
    /// Fixed addresses in the certificate.
    Fixed { v4: Ipv4Addr, v6: Option<Ipv6Addr> },
    /// `--allocate`: the node allocates one from the group range.
    Allocate,
}

/// One member to issue a certificate for.
#[derive(Clone, Debug)]
pub struct MemberRequest {
    pub name: String,
    pub address: MemberAddress,
}

/// The group's CA.
#[derive(Clone, Debug)]
pub struct GroupSpec {
    pub group: String,
    pub range_v4: String,
    pub range_v6: Option<String>,
    /// `vpn-control` duration, e.g. `30d`.
    pub validity: String,
}

impl GroupSpec {
    /// The labs' group: `10.77.0.0/24` and `fd77::/64`.
    pub fn lab(group: &str, ipv6: bool) -> Self {
        Self {
            group: group.to_owned(),
            range_v4: "10.77.0.0/24".into(),
            range_v6: ipv6.then(|| "fd77::/64".into()),
            validity: "30d".into(),
        }
    }
}

/// A member's files.
#[derive(Clone, Debug)]
pub struct MemberCredentials {
    pub name: String,
    /// Its identity key (PKCS#8 PEM, mode 0600): its PeerId.
    pub identity: PathBuf,
    /// Its member certificate (PEM).
    pub certificate: PathBuf,
    pub peer_id: String,
    pub address: MemberAddress,
}

/// Everything the members of a group need.
#[derive(Clone, Debug)]
pub struct GroupCredentials {
    pub group: String,
    /// The CA folder (`ca.crt`, `ca.key`).
    pub ca_dir: PathBuf,
    /// The CA certificate every member trusts.
    pub ca_cert: PathBuf,
    pub members: Vec<MemberCredentials>,
}

/// Makes a CA in `dir/ca` and, for each request, an identity and a
/// certificate in `dir/<name>/{node.key,node.crt}`, all with `bin`.
pub fn credentials_from_cli(
    bin: &Path,
    dir: &Path,
    group: &GroupSpec,
    members: &[MemberRequest],
) -> Result<GroupCredentials> {
    let ca_dir = dir.join("ca");
    let mut init = Command::new(bin);
    init.args([
        "ca",
        "init",
        "--group",
        &group.group,
        "--range",
        &group.range_v4,
    ]);
    if let Some(r6) = &group.range_v6 {
        init.args(["--range6", r6]);
    }
    init.args(["--validity", &group.validity, "--out"])
        .arg(&ca_dir);
    run_checked(&mut init)?;
    let ca_cert = ca_dir.join("ca.crt");
    if !ca_cert.is_file() {
        return Err(Error::Setup(format!(
            "`vpn-control ca init` wrote no {}",
            ca_cert.display()
        )));
    }
    let mut out = Vec::with_capacity(members.len());
    for m in members {
        let mdir = dir.join(&m.name);
        std::fs::create_dir_all(&mdir)?;
        let identity = mdir.join("node.key");
        let certificate = mdir.join("node.crt");
        let peer_id = identity_peer_id(bin, &identity)?;
        let mut sign = Command::new(bin);
        sign.args(["cert", "sign", "--ca-dir"])
            .arg(&ca_dir)
            .arg("--identity")
            .arg(&identity)
            .args(["--name", &m.name, "--validity", "7d", "--out"])
            .arg(&certificate);
        match &m.address {
            MemberAddress::Fixed { v4, v6 } => {
                sign.args(["--address", &v4.to_string()]);
                if let Some(v6) = v6 {
                    sign.args(["--address", &v6.to_string()]);
                }
            }
            MemberAddress::Allocate => {
                sign.arg("--allocate");
            }
        }
        run_checked(&mut sign)?;
        out.push(MemberCredentials {
            name: m.name.clone(),
            identity,
            certificate,
            peer_id,
            address: m.address.clone(),
        });
    }
    Ok(GroupCredentials {
        group: group.group.clone(),
        ca_dir,
        ca_cert,
        members: out,
    })
}

/// `vpn-control cert identity --file FILE`: creates the key if missing and
/// returns its PeerId.
pub fn identity_peer_id(bin: &Path, file: &Path) -> Result<String> {
    let out = run_checked(
        Command::new(bin)
            .args(["cert", "identity", "--file"])
            .arg(file),
    )?;
    let id = out
        .split_whitespace()
        .find(|w| w.starts_with("12D3Koo"))
        .ok_or_else(|| Error::Parse {
            what: "`vpn-control cert identity` output".into(),
            detail: out.clone(),
        })?;
    Ok(id.to_owned())
}
