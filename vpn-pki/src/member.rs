//! Member certificates: Ed25519 X.509 v3 certificates signed by the group CA
//! whose subject key *is* the node's libp2p key, so the PeerId binding is
//! the key itself; the PeerId is also written as a subjectAltName URI
//! (`libp2p:peer/<PeerId>`) for people and tools, and the group, name,
//! address assignment and roles in the GroupVPN member extension.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use libp2p_identity::PeerId;
use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, IsCa, KeyUsagePurpose, SanType,
};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer as _;

use crate::ca::{GroupCa, BACKDATE};
use crate::ext::{MemberExt, OID_MEMBER, PEER_URI_PREFIX};
use crate::files::{self, PEM_CERT};
use crate::group::{validate_node_name, AddressAssignment, Role};
use crate::identity::{peer_id_of, spki_der};
use crate::time::{from_asn1, to_offset, truncate};
use crate::x509::{self as xh, Serial};
use crate::PkiError;

/// What the issuer decides about a member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertProfile {
    /// The node's name (subject CN).
    pub name: String,
    /// Fixed address(es) or allocation from the group's range.
    pub address: AddressAssignment,
    /// Roles (at least one; `member` normally).
    pub roles: Vec<Role>,
    /// Validity from issuance.
    pub validity: Duration,
}

/// What a member certificate says (after verification, what it proves).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    /// The node's PeerId (derived from the certificate's key).
    pub peer_id: PeerId,
    /// The node's name.
    pub name: String,
    /// The group.
    pub group: String,
    /// Its virtual address(es), or "allocate".
    pub address: AddressAssignment,
    /// Its roles.
    pub roles: Vec<Role>,
    /// notBefore.
    pub not_before: SystemTime,
    /// notAfter.
    pub not_after: SystemTime,
    /// The serial number.
    pub serial: Serial,
}

impl MemberInfo {
    /// Whether the certificate grants `role`.
    pub fn has_role(&self, role: &Role) -> bool {
        self.roles.contains(role)
    }
}

/// A parsed member certificate (structure checked, trust not yet: see
/// [`crate::verify_member`]).
#[derive(Clone, Debug)]
pub struct MemberCert {
    der: Vec<u8>,
    info: MemberInfo,
    public_key: [u8; 32],
    issuer: String,
    issuer_raw: Vec<u8>,
    authority_key_id: Option<Vec<u8>>,
    subject: String,
}

impl MemberCert {
    /// Parses a member certificate and checks its profile: Ed25519 key and
    /// signature algorithm, not a CA, the member extension present, and the
    /// subjectAltName PeerId (if any) equal to the key's PeerId.
    pub fn from_der(der: &[u8]) -> Result<Self, PkiError> {
        const W: &str = "certificate";
        let (rest, c) = x509_parser::certificate::X509Certificate::from_der(der)
            .map_err(|e| PkiError::malformed(W, e))?;
        if !rest.is_empty() {
            return Err(PkiError::malformed(W, "trailing bytes"));
        }
        xh::require_ed25519_sig(&c.signature_algorithm, W)?;
        let public_key = xh::ed25519_key(c.public_key(), W)?;
        let not_member = |r: &str| PkiError::NotMemberCertificate(r.to_owned());
        let bc = c
            .basic_constraints()
            .map_err(|e| PkiError::malformed(W, e))?;
        if bc.is_some_and(|b| b.value.ca) {
            return Err(not_member("it is a CA certificate"));
        }
        let ext = xh::find_ext(c.extensions(), &OID_MEMBER)
            .ok_or_else(|| not_member("no GroupVPN member extension"))?;
        let m = MemberExt::decode(ext)?;
        if m.roles.is_empty() {
            return Err(not_member("no roles"));
        }
        let peer_id = peer_id_of(&public_key)?;
        let san = c
            .subject_alternative_name()
            .map_err(|e| PkiError::malformed(W, e))?;
        for name in san.iter().flat_map(|s| s.value.general_names.iter()) {
            if let GeneralName::URI(u) = name {
                if let Some(p) = u.strip_prefix(PEER_URI_PREFIX) {
                    if p != peer_id.to_string() {
                        return Err(not_member(
                            "subjectAltName PeerId differs from the certificate key",
                        ));
                    }
                }
            }
        }
        let info = MemberInfo {
            peer_id,
            name: m.name,
            group: m.group,
            address: m.address,
            roles: m.roles,
            not_before: from_asn1(c.validity().not_before),
            not_after: from_asn1(c.validity().not_after),
            serial: Serial::from_bytes(c.raw_serial()),
        };
        Ok(Self {
            der: der.to_vec(),
            info,
            public_key,
            issuer: c.issuer().to_string(),
            issuer_raw: c.issuer().as_raw().to_vec(),
            authority_key_id: xh::authority_key_id(c.extensions()),
            subject: c.subject().to_string(),
        })
    }

    /// Parses PEM or DER.
    pub fn from_pem_or_der(bytes: &[u8]) -> Result<Self, PkiError> {
        let der = files::pem_or_der(bytes, PEM_CERT)
            .map_err(|r| PkiError::malformed("certificate", r))?;
        Self::from_der(&der)
    }

    /// Loads a certificate file (PEM or DER).
    pub fn load(path: &Path) -> Result<Self, PkiError> {
        let der = files::read_pem_or_der(path, PEM_CERT)?;
        Self::from_der(&der)
    }

    /// DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// PEM encoding.
    pub fn to_pem(&self) -> String {
        files::to_pem(PEM_CERT, &self.der)
    }

    /// What the certificate says.
    pub fn info(&self) -> &MemberInfo {
        &self.info
    }

    /// The node's Ed25519 public key.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public_key
    }

    /// The issuer name as text.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The subject name as text.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// SHA-256 fingerprint.
    pub fn fingerprint(&self) -> String {
        xh::fingerprint(&self.der)
    }

    pub(crate) fn issuer_raw(&self) -> &[u8] {
        &self.issuer_raw
    }

    pub(crate) fn authority_key_id(&self) -> Option<&[u8]> {
        self.authority_key_id.as_deref()
    }
}

impl GroupCa {
    /// Issues a member certificate for the Ed25519 key `subject_key` (the
    /// node's PeerId key), valid from `now` (backdated by [`BACKDATE`]) for
    /// `profile.validity`. Refuses certificates that would outlive the CA
    /// and fixed addresses outside the group's ranges.
    pub fn issue(
        &self,
        subject_key: &[u8; 32],
        profile: &CertProfile,
        now: SystemTime,
    ) -> Result<MemberCert, PkiError> {
        validate_node_name(&profile.name)?;
        if profile.roles.is_empty() {
            return Err(PkiError::input("roles", "at least one role is needed"));
        }
        if let Some(r) = profile.roles.iter().find(|r| matches!(r, Role::Other(_))) {
            return Err(PkiError::input("role", format!("unknown role {r}")));
        }
        let ca = self.certificate();
        profile.address.check(ca.ranges())?;
        let peer_id = peer_id_of(subject_key)?;
        let now = truncate(now);
        let not_after = now + profile.validity;
        if not_after > ca.not_after() {
            return Err(PkiError::OutlivesCa {
                ca_not_after: ca.not_after(),
                not_after,
            });
        }
        let not_before = (now - BACKDATE).max(ca.not_before());

        let mut p = CertificateParams::default();
        p.not_before = to_offset(not_before)?;
        p.not_after = to_offset(not_after)?;
        p.serial_number = Some(rcgen::SerialNumber::from_slice(
            Serial::random()?.as_bytes(),
        ));
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, profile.name.clone());
        dn.push(DnType::OrganizationName, ca.group().to_owned());
        p.distinguished_name = dn;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.use_authority_key_identifier_extension = true;
        let uri = format!("{PEER_URI_PREFIX}{peer_id}");
        let mut sans = vec![SanType::URI(
            uri.try_into()
                .map_err(|e| PkiError::build("certificate", e))?,
        )];
        if let AddressAssignment::Fixed(addrs) = &profile.address {
            sans.extend(addrs.iter().map(|a: &IpAddr| SanType::IpAddress(*a)));
        }
        p.subject_alt_names = sans;
        let ext = MemberExt {
            group: ca.group().to_owned(),
            name: profile.name.clone(),
            address: profile.address.clone(),
            roles: profile.roles.clone(),
        };
        p.custom_extensions = vec![CustomExtension::from_oid_content(&OID_MEMBER, ext.encode())];
        let spki = rcgen::SubjectPublicKeyInfo::from_der(&spki_der(subject_key))
            .map_err(|e| PkiError::build("certificate", e))?;
        let cert = p
            .signed_by(&spki, self.issuer(), self.key())
            .map_err(|e| PkiError::build("certificate", e))?;
        MemberCert::from_der(cert.der())
    }
}
