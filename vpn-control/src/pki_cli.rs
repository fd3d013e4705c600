//! `vpn-control ca ...` and `vpn-control cert ...`: the offline group PKI
//! tools (as `nebula-cert` is for Nebula), a thin front-end over `vpn-pki`.
//! See `docs/pki.md`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context as _};
use clap::{ArgGroup, Args, Subcommand};
use vpn_pki::{
    fmt_ranges, fmt_time, parse_duration, parse_peer_id, public_key_of, verify_issued_by,
    verify_member_cert, AddressAssignment, CaCertificate, CaParams, CertProfile, Crl, GroupCa,
    IpRange, MemberCert, NodeIdentity, PkiError, RevocationReason, RevocationStore, Role, Serial,
};

/// `vpn-control ca ...`
#[derive(Debug, Subcommand)]
pub enum CaCmd {
    /// Create a group CA: DIR/ca.crt and DIR/ca.key (mode 0600).
    Init(CaInit),
    /// Add a certificate to the CA directory's revocation list.
    Revoke(CaRevoke),
    /// Write a signed X.509 CRL of the CA directory's revocations.
    Crl(CaCrl),
}

/// `vpn-control cert ...`
#[derive(Debug, Subcommand)]
pub enum CertCmd {
    /// Sign a member certificate for a node's PeerId.
    Sign(CertSign),
    /// Print a certificate (member or CA).
    Print(CertPrint),
    /// Verify a member certificate against the group CA (and a CRL).
    Verify(CertVerify),
    /// Create a node identity (Ed25519 key = PeerId) if missing; print its PeerId.
    Identity(CertIdentity),
    /// Write a PKCS#10 certificate request for a node identity.
    Request(CertRequest),
}

/// Arguments of `ca init`.
#[derive(Debug, Args)]
pub struct CaInit {
    /// Group name (letters, digits, `.`, `_`, `-`).
    #[arg(long)]
    group: String,
    /// The group's IPv4 address range.
    #[arg(long, value_name = "CIDR")]
    range: IpRange,
    /// The group's IPv6 address range.
    #[arg(long, value_name = "CIDR")]
    range6: Option<IpRange>,
    /// Validity of the CA (s, m, h, d, w).
    #[arg(long, default_value = "365d")]
    validity: String,
    /// CA directory to create (must not hold a CA yet).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// Arguments of `ca revoke`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("what").required(true).args(["serial", "cert"])))]
pub struct CaRevoke {
    /// CA directory.
    #[arg(long, value_name = "DIR")]
    ca_dir: PathBuf,
    /// Serial number to revoke (hex, `:` separators allowed).
    #[arg(long)]
    serial: Option<String>,
    /// Certificate file to revoke (must be issued by this CA).
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// RFC 5280 reason: unspecified, keyCompromise, affiliationChanged,
    /// superseded, cessationOfOperation, privilegeWithdrawn.
    #[arg(long, default_value = "unspecified")]
    reason: String,
}

/// Arguments of `ca crl`.
#[derive(Debug, Args)]
pub struct CaCrl {
    /// CA directory.
    #[arg(long, value_name = "DIR")]
    ca_dir: PathBuf,
    /// Where to write the CRL (PEM).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// When the next CRL is due (nodes refuse this one after that).
    #[arg(long, default_value = "7d")]
    next_update: String,
}

/// Arguments of `cert sign`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("key").required(true).args(["peer_id", "identity", "csr"])))]
#[command(group(ArgGroup::new("addr").required(true).args(["address", "allocate"])))]
pub struct CertSign {
    /// CA directory.
    #[arg(long, value_name = "DIR")]
    ca_dir: PathBuf,
    /// The node's PeerId (Ed25519 PeerIds embed the key).
    #[arg(long)]
    peer_id: Option<String>,
    /// The node's identity file (only its public key is used).
    #[arg(long, value_name = "FILE")]
    identity: Option<PathBuf>,
    /// A PKCS#10 request from the node (self-signature checked).
    #[arg(long, value_name = "FILE")]
    csr: Option<PathBuf>,
    /// Node name (certificate CN).
    #[arg(long)]
    name: String,
    /// Fixed virtual address (one IPv4, optionally one IPv6; repeat the flag).
    #[arg(long)]
    address: Vec<IpAddr>,
    /// Let the node allocate its address from the group range.
    #[arg(long)]
    allocate: bool,
    /// Roles, comma separated: member, gateway, relay.
    #[arg(long, default_value = "member")]
    roles: String,
    /// Validity (s, m, h, d, w).
    #[arg(long, default_value = "90d")]
    validity: String,
    /// Where to write the certificate (PEM).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// Arguments of `cert print`.
#[derive(Debug, Args)]
pub struct CertPrint {
    /// Certificate file (PEM or DER).
    file: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `cert verify`.
#[derive(Debug, Args)]
pub struct CertVerify {
    /// The group CA certificate.
    #[arg(long, value_name = "FILE")]
    ca: PathBuf,
    /// A CRL to check (signature, freshness, revocation).
    #[arg(long, value_name = "FILE")]
    crl: Option<PathBuf>,
    /// Certificate file to verify.
    file: PathBuf,
    /// Require this PeerId.
    #[arg(long)]
    peer_id: Option<String>,
    /// Require this group (default: the CA's).
    #[arg(long)]
    group: Option<String>,
}

/// Arguments of `cert identity`.
#[derive(Debug, Args)]
pub struct CertIdentity {
    /// Identity file (created with mode 0600 if missing).
    #[arg(long, value_name = "FILE")]
    file: PathBuf,
}

/// Arguments of `cert request`.
#[derive(Debug, Args)]
pub struct CertRequest {
    /// Identity file (created with mode 0600 if missing).
    #[arg(long, value_name = "FILE")]
    identity: PathBuf,
    /// Suggested node name.
    #[arg(long)]
    name: String,
    /// Where to write the request (PEM).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// Runs a `ca` command; returns what to print.
pub fn run_ca(cmd: CaCmd) -> anyhow::Result<String> {
    run_ca_at(cmd, SystemTime::now())
}

/// Runs a `cert` command; returns what to print.
pub fn run_cert(cmd: CertCmd) -> anyhow::Result<String> {
    run_cert_at(cmd, SystemTime::now())
}

fn run_ca_at(cmd: CaCmd, now: SystemTime) -> anyhow::Result<String> {
    match cmd {
        CaCmd::Init(a) => {
            let mut ranges = vec![a.range];
            ranges.extend(a.range6);
            let params = CaParams {
                group: a.group,
                ranges,
                validity: parse_duration(&a.validity)?,
            };
            let ca = GroupCa::init(&params, now)?;
            let (crt, key) = ca.save_new(&a.out)?;
            let c = ca.certificate();
            Ok(format!(
                "created group CA \"{}\" ({}), valid until {}\n  {}\n  {} (mode 0600: keep it secret, back it up)\n  SHA-256 {}\n",
                c.group(),
                fmt_ranges(c.ranges()),
                fmt_time(c.not_after()),
                crt.display(),
                key.display(),
                c.fingerprint()
            ))
        }
        CaCmd::Revoke(a) => {
            let ca = GroupCa::load(&a.ca_dir)?;
            let reason: RevocationReason = a.reason.parse()?;
            let serial: Serial = match (&a.serial, &a.cert) {
                (Some(s), _) => s.parse()?,
                (None, Some(f)) => {
                    let cert = MemberCert::load(f)?;
                    verify_issued_by(&cert, ca.certificate())
                        .with_context(|| format!("{} was not issued by this CA", f.display()))?;
                    cert.info().serial.clone()
                }
                (None, None) => bail!("give --serial or --cert"),
            };
            let mut store = RevocationStore::load(&a.ca_dir)?;
            if store.revoke(serial.clone(), now, reason)? {
                Ok(format!(
                    "revoked serial {serial} ({reason}); run `vpn-control ca crl` to publish a new CRL\n"
                ))
            } else {
                Ok(format!(
                    "serial {serial} was already revoked; nothing changed\n"
                ))
            }
        }
        CaCmd::Crl(a) => {
            let ca = GroupCa::load(&a.ca_dir)?;
            let next = parse_duration(&a.next_update)?;
            let mut store = RevocationStore::load(&a.ca_dir)?;
            let crl = store.issue_crl(&ca, now, next)?;
            vpn_pki::write_atomic(&a.out, crl.to_pem().as_bytes(), 0o644)?;
            Ok(format!(
                "wrote {}: CRL number {}, {} revoked certificate(s), next update {}\n",
                a.out.display(),
                crl.number().unwrap_or(0),
                crl.entries().count(),
                crl.next_update().map(fmt_time).unwrap_or_default()
            ))
        }
    }
}

fn run_cert_at(cmd: CertCmd, now: SystemTime) -> anyhow::Result<String> {
    match cmd {
        CertCmd::Sign(a) => sign(a, now),
        CertCmd::Print(a) => print(&a.file, a.json),
        CertCmd::Verify(a) => verify(a, now),
        CertCmd::Identity(a) => {
            let (id, created) = NodeIdentity::load_or_create(&a.file)?;
            let what = if created { "created" } else { "loaded" };
            eprintln!("{what} {}", a.file.display());
            Ok(format!("{}\n", id.peer_id()))
        }
        CertCmd::Request(a) => {
            let (id, _) = NodeIdentity::load_or_create(&a.identity)?;
            let der = vpn_pki::make_csr(&id, &a.name)?;
            vpn_pki::write_atomic(&a.out, vpn_pki::csr_to_pem(&der).as_bytes(), 0o644)?;
            Ok(format!(
                "wrote {}: request for PeerId {}\n",
                a.out.display(),
                id.peer_id()
            ))
        }
    }
}

fn sign(a: CertSign, now: SystemTime) -> anyhow::Result<String> {
    let ca = GroupCa::load(&a.ca_dir)?;
    let key: [u8; 32] = if let Some(p) = &a.peer_id {
        public_key_of(&parse_peer_id(p)?)?
    } else if let Some(f) = &a.identity {
        NodeIdentity::load(f)?.public_key()
    } else if let Some(f) = &a.csr {
        let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        let der = vpn_pki::csr_from_pem_or_der(&bytes)?;
        vpn_pki::verify_csr(&der)
            .with_context(|| format!("checking {}", f.display()))?
            .public_key
    } else {
        bail!("give --peer-id, --identity or --csr");
    };
    let address = if a.allocate {
        AddressAssignment::Allocate
    } else {
        AddressAssignment::Fixed(a.address)
    };
    let profile = CertProfile {
        name: a.name,
        address,
        roles: Role::parse_list(&a.roles)?,
        validity: parse_duration(&a.validity)?,
    };
    let cert = ca.issue(&key, &profile, now)?;
    vpn_pki::write_atomic(&a.out, cert.to_pem().as_bytes(), 0o644)?;
    let i = cert.info();
    Ok(format!(
        "wrote {}: {} ({}) in group \"{}\", address {}, roles {}, serial {}, valid until {}\n",
        a.out.display(),
        i.name,
        i.peer_id,
        i.group,
        i.address,
        roles(&i.roles),
        i.serial,
        fmt_time(i.not_after)
    ))
}

fn roles(r: &[Role]) -> String {
    r.iter().map(Role::as_str).collect::<Vec<_>>().join(", ")
}

fn print(file: &Path, json: bool) -> anyhow::Result<String> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    match MemberCert::from_pem_or_der(&bytes) {
        Ok(c) => Ok(if json {
            member_json(&c)
        } else {
            member_text(&c)
        }),
        Err(PkiError::NotMemberCertificate(_)) => {
            let c = CaCertificate::from_pem_or_der(&bytes).with_context(|| {
                format!(
                    "{} is neither a member nor a CA certificate",
                    file.display()
                )
            })?;
            Ok(if json { ca_json(&c) } else { ca_text(&c) })
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("reading {}", file.display()))),
    }
}

fn member_text(c: &MemberCert) -> String {
    let i = c.info();
    format!(
        "GroupVPN member certificate\n  Name:        {}\n  PeerId:      {}\n  Group:       {}\n  Address:     {}\n  Roles:       {}\n  Serial:      {}\n  Not before:  {}\n  Not after:   {}\n  Subject:     {}\n  Issuer:      {}\n  SHA-256:     {}\n",
        i.name,
        i.peer_id,
        i.group,
        i.address,
        roles(&i.roles),
        i.serial,
        fmt_time(i.not_before),
        fmt_time(i.not_after),
        c.subject(),
        c.issuer(),
        c.fingerprint()
    )
}

fn member_json(c: &MemberCert) -> String {
    let i = c.info();
    let (addresses, allocate) = match &i.address {
        AddressAssignment::Fixed(a) => (a.iter().map(ToString::to_string).collect(), false),
        AddressAssignment::Allocate => (Vec::new(), true),
    };
    let v = serde_json::json!({
        "kind": "member",
        "name": i.name,
        "peer_id": i.peer_id.to_string(),
        "group": i.group,
        "addresses": addresses,
        "allocate": allocate,
        "roles": i.roles.iter().map(Role::as_str).collect::<Vec<_>>(),
        "serial": i.serial.to_string(),
        "not_before": fmt_time(i.not_before),
        "not_after": fmt_time(i.not_after),
        "subject": c.subject(),
        "issuer": c.issuer(),
        "sha256": c.fingerprint(),
    });
    format!("{v:#}\n")
}

fn ca_text(c: &CaCertificate) -> String {
    format!(
        "GroupVPN group CA certificate\n  Group:       {}\n  Ranges:      {}\n  Serial:      {}\n  Not before:  {}\n  Not after:   {}\n  Subject:     {}\n  SHA-256:     {}\n",
        c.group(),
        fmt_ranges(c.ranges()),
        c.serial(),
        fmt_time(c.not_before()),
        fmt_time(c.not_after()),
        c.subject(),
        c.fingerprint()
    )
}

fn ca_json(c: &CaCertificate) -> String {
    let v = serde_json::json!({
        "kind": "ca",
        "group": c.group(),
        "ranges": c.ranges().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "serial": c.serial().to_string(),
        "not_before": fmt_time(c.not_before()),
        "not_after": fmt_time(c.not_after()),
        "subject": c.subject(),
        "sha256": c.fingerprint(),
    });
    format!("{v:#}\n")
}

fn verify(a: CertVerify, now: SystemTime) -> anyhow::Result<String> {
    let ca = CaCertificate::load(&a.ca)?;
    let crl = a.crl.as_deref().map(Crl::load).transpose()?;
    let cert = MemberCert::load(&a.file)?;
    let peer = match &a.peer_id {
        Some(p) => parse_peer_id(p)?,
        None => cert.info().peer_id,
    };
    let group = a.group.as_deref().unwrap_or(ca.group());
    verify_member_cert(&cert, &ca, crl.as_ref(), &peer, group, now)
        .with_context(|| format!("{}: verification failed", a.file.display()))?;
    let i = cert.info();
    Ok(format!(
        "{}: OK ({} {} in group \"{}\", valid until {}{})\n",
        a.file.display(),
        i.name,
        i.peer_id,
        i.group,
        fmt_time(i.not_after),
        if crl.is_some() { ", not revoked" } else { "" }
    ))
}

#[cfg(test)]
mod tests;
