//! Helpers for tests of this crate and of the interop suite (feature `testing`).

use std::path::{Path, PathBuf};

/// A test PKI: a CA and the node certificates it signs, written as PEM files.
#[allow(missing_debug_implementations)]
pub struct Pki {
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

impl Pki {
    /// A new CA called `name`.
    pub fn new(name: &str) -> Pki {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let ca = params.self_signed(&ca_key).expect("CA certificate");
        Pki { ca, ca_key }
    }

    /// A node certificate naming `node_ids` in URI SANs (RFC 9174 §4.4.1); written as PEM
    /// files `NAME.crt` and `NAME.key` (PKCS#8) into `dir`, returned as (certificate, key).
    pub fn issue(&self, node_ids: &[&str], dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        self.issue_with_dns(node_ids, &[], dir, name)
    }

    /// As [`Pki::issue`], also naming `dns_names` in DNS SANs, for peers that check the name
    /// they dialled (Hardy checks `localhost` on loopback).
    pub fn issue_with_dns(
        &self,
        node_ids: &[&str],
        dns_names: &[&str],
        dir: &Path,
        name: &str,
    ) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.subject_alt_names = node_ids
            .iter()
            .map(|id| rcgen::SanType::URI((*id).try_into().expect("an IA5 string")))
            .chain(
                dns_names.iter().map(|dns| rcgen::SanType::DnsName((*dns).try_into().expect("a DNS name"))),
            )
            .collect();
        params.extended_key_usages =
            vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let certificate = params.signed_by(&key, &self.ca, &self.ca_key).expect("sign");
        let (cert_path, key_path) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
        std::fs::write(&cert_path, certificate.pem()).expect("write certificate");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        (cert_path, key_path)
    }

    /// The CA certificate, written as `ca.crt` into `dir`.
    pub fn write_ca(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.crt");
        std::fs::write(&path, self.ca.pem()).expect("write CA");
        path
    }
}
