//! A development certificate authority and per-party certificates for local clusters
//! (`tessera certs`). Production clusters bring their own CA; parties are identified by the DNS
//! name in their certificate's subject alternative name.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};

use crate::error::{NetError, Result};

/// A party's certificate and private key, PEM-encoded.
#[derive(Clone)]
pub struct PartyPem {
    /// The party name (the certificate's DNS name).
    pub name: String,
    /// Certificate.
    pub cert: String,
    /// Private key (PKCS#8).
    pub key: String,
}

impl std::fmt::Debug for PartyPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartyPem").field("name", &self.name).finish_non_exhaustive()
    }
}

/// A fresh CA and one certificate per party; returns the CA certificate (PEM) and the parties'.
pub fn dev_cluster(cluster: &str, parties: &[&str]) -> Result<(String, Vec<PartyPem>)> {
    let err = |e: rcgen::Error| NetError::Certificate(e.to_string());
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.distinguished_name.push(DnType::CommonName, format!("{cluster} development CA"));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(err)?).map_err(err)?;
    let mut out = Vec::with_capacity(parties.len());
    for &name in parties {
        let mut params = CertificateParams::new(vec![name.to_string()]).map_err(err)?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages =
            vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().map_err(err)?;
        let cert = params.signed_by(&key, &ca).map_err(err)?;
        out.push(PartyPem { name: name.to_string(), cert: cert.pem(), key: key.serialize_pem() });
    }
    Ok((ca.pem(), out))
}
