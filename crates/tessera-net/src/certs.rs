//! A development certificate authority and per-party certificates for local clusters
//! (`tessera certs`). Production clusters bring their own CA; parties are identified by the DNS
//! name in their certificate's subject alternative name. Development certificates are valid for
//! [`DEV_VALIDITY`] and each only for the TLS side(s) its party's role takes.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use zeroize::Zeroizing;

use crate::error::{NetError, Result};

/// How long development certificates are valid (from an hour before they are made, for clocks
/// slightly behind).
pub const DEV_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);

/// The TLS side(s) a party's certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUse {
    /// Accepts connections only (a server no one else's party dials from).
    Server,
    /// Opens connections only (a user).
    Client,
    /// Both: a server that also dials other servers.
    Both,
}

impl KeyUse {
    fn purposes(self) -> Vec<ExtendedKeyUsagePurpose> {
        match self {
            KeyUse::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            KeyUse::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            KeyUse::Both => vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
        }
    }
}

/// A party's certificate and private key, PEM-encoded (the key is wiped on drop).
#[derive(Clone)]
pub struct PartyPem {
    /// The party name (the certificate's DNS name).
    pub name: String,
    /// Certificate.
    pub cert: String,
    /// Private key (PKCS#8).
    pub key: Zeroizing<String>,
}

impl std::fmt::Debug for PartyPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartyPem").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Sets `params` valid from an hour ago for [`DEV_VALIDITY`].
fn dev_validity(params: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + DEV_VALIDITY;
}

/// A fresh CA and one certificate per party, each for its [`KeyUse`]; returns the CA
/// certificate (PEM) and the parties'.
pub fn dev_cluster(cluster: &str, parties: &[(&str, KeyUse)]) -> Result<(String, Vec<PartyPem>)> {
    let err = |e: rcgen::Error| NetError::Certificate(e.to_string());
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    dev_validity(&mut ca_params);
    ca_params.distinguished_name.push(DnType::CommonName, format!("{cluster} development CA"));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(err)?).map_err(err)?;
    let mut out = Vec::with_capacity(parties.len());
    for &(name, usage) in parties {
        let mut params = CertificateParams::new(vec![name.to_string()]).map_err(err)?;
        params.distinguished_name.push(DnType::CommonName, name);
        dev_validity(&mut params);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = usage.purposes();
        let key = KeyPair::generate().map_err(err)?;
        let cert = params.signed_by(&key, &ca).map_err(err)?;
        out.push(PartyPem { name: name.to_string(), cert: cert.pem(), key: Zeroizing::new(key.serialize_pem()) });
    }
    Ok((ca.pem(), out))
}
