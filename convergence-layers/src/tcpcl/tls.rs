//! TLS for TCPCL sessions (RFC 9174 §4.4) with rustls and the ring provider.
//!
//! Both sides present a certificate and check the other's against the configured trust
//! anchors. Entities are authenticated by node ID: the certificate's URI subject alternative
//! names are handed to the session, which compares them with the SESS_INIT node ID
//! (§4.4.4.3). A certificate that does not name the host the active side dialled is accepted
//! (§4.4.4.2 lets the active side rely on node-ID authentication instead), as long as its
//! chain is valid; a passive side accepts an active side without a certificate only when node-ID
//! authentication is not required.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {problem}")]
    Read { what: &'static str, path: PathBuf, problem: String },
    #[error("{path} holds no PEM certificate: give the node's certificate (chain) in PEM")]
    NoCertificate { path: PathBuf },
    #[error("a trust anchor is not usable: {0}")]
    TrustAnchor(String),
    #[error("the trust anchor in {path} is not usable: {problem}")]
    BadTrustAnchor { path: PathBuf, problem: String },
    #[error("the TLS configuration is refused: {0}")]
    Rustls(String),
}

/// The node's TLS identity and trust anchors, ready for both roles.
#[derive(Debug, Clone)]
pub struct TlsSetup {
    pub(crate) client: Arc<ClientConfig>,
    pub(crate) server: Arc<ServerConfig>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsSetup {
    /// From the node's certificate chain (leaf first) and key, and the certificates it trusts.
    /// `require_client_certificate`: a passive side refuses an active side that presents none.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        trusted: Vec<CertificateDer<'static>>,
        require_client_certificate: bool,
    ) -> Result<TlsSetup, TlsError> {
        let mut roots = RootCertStore::empty();
        for anchor in trusted {
            roots.add(anchor).map_err(|e| TlsError::TrustAnchor(e.to_string()))?;
        }
        let roots = Arc::new(roots);
        let rustls_error = |e: rustls::Error| TlsError::Rustls(e.to_string());
        let verifier_error = |e: rustls::server::VerifierBuilderError| TlsError::Rustls(e.to_string());

        let server_chain = WebPkiServerVerifier::builder_with_provider(Arc::clone(&roots), provider())
            .build()
            .map_err(verifier_error)?;
        let client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(rustls_error)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NodeIdServerVerifier { chain: server_chain }))
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(rustls_error)?;

        let client_verifier = WebPkiClientVerifier::builder_with_provider(roots, provider());
        let client_verifier = if require_client_certificate {
            client_verifier
        } else {
            client_verifier.allow_unauthenticated()
        };
        let server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(rustls_error)?
            .with_client_cert_verifier(client_verifier.build().map_err(verifier_error)?)
            .with_single_cert(chain, key)
            .map_err(rustls_error)?;
        Ok(TlsSetup { client: Arc::new(client), server: Arc::new(server) })
    }

    /// From PEM files: the node's certificate chain, its private key, and the trust anchors.
    pub fn from_pem_files(
        certificate: &Path,
        private_key: &Path,
        trust: &Path,
        require_client_certificate: bool,
    ) -> Result<TlsSetup, TlsError> {
        let chain = read_certificates("certificate", certificate)?;
        let key = PrivateKeyDer::from_pem_file(private_key).map_err(|e| TlsError::Read {
            what: "private key",
            path: private_key.to_path_buf(),
            problem: e.to_string(),
        })?;
        let trusted = read_certificates("trust anchors", trust)?;
        TlsSetup::new(chain, key, trusted, require_client_certificate).map_err(|error| match error {
            TlsError::TrustAnchor(problem) => TlsError::BadTrustAnchor { path: trust.to_path_buf(), problem },
            other => other,
        })
    }

    /// The name the active side gives rustls for the peer it dialled.
    pub(crate) fn server_name(address: std::net::SocketAddr) -> ServerName<'static> {
        ServerName::IpAddress(address.ip().into())
    }
}

fn read_certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read_error = |problem: String| TlsError::Read { what, path: path.to_path_buf(), problem };
    let certificates: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| read_error(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| read_error(e.to_string()))?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate { path: path.to_path_buf() });
    }
    Ok(certificates)
}

/// The node IDs a certificate carries: its URI subject alternative names (§4.4.1). Empty for
/// a certificate that cannot be parsed (the handshake has already checked it).
pub fn certified_node_ids(certificate: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(certificate.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(names)) = parsed.subject_alternative_name() else { return Vec::new() };
    names
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) => Some((*uri).to_string()),
            _ => None,
        })
        .collect()
}

/// The web PKI's chain check, without requiring the certificate to name the dialled host:
/// TCPCL entities are authenticated by node ID (§4.4.4).
#[derive(Debug)]
struct NodeIdServerVerifier {
    chain: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for NodeIdServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate naming `node_id`, and its key, as PEM.
    fn certificate(node_id: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.subject_alt_names = vec![rcgen::SanType::URI(node_id.try_into().expect("IA5"))];
        let certificate = params.self_signed(&key).expect("certificate");
        (certificate.pem(), key.serialize_pem())
    }

    fn files(dir: &Path, certificate: &str, key: &str, trust: &str) -> (PathBuf, PathBuf, PathBuf) {
        let paths = (dir.join("node.crt"), dir.join("node.key"), dir.join("ca.crt"));
        std::fs::write(&paths.0, certificate).expect("write");
        std::fs::write(&paths.1, key).expect("write");
        std::fs::write(&paths.2, trust).expect("write");
        paths
    }

    #[test]
    fn node_ids_are_the_certificates_uri_names() {
        let (pem, _) = certificate("dtn://node7/");
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).expect("PEM");
        assert_eq!(certified_node_ids(&der), ["dtn://node7/"]);
        assert!(certified_node_ids(&CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01])).is_empty());
    }

    #[test]
    fn bad_files_are_refused_naming_the_file_and_the_problem() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = certificate("ipn:1.0");
        let (other_cert, other_key) = certificate("ipn:2.0");

        let (c, k, t) = files(dir.path(), &cert, &key, &cert);
        TlsSetup::from_pem_files(&c, &k, &t, true).expect("a matching set is accepted");

        let (c, k, t) = files(dir.path(), "not PEM at all", &key, &cert);
        let error = TlsSetup::from_pem_files(&c, &k, &t, true).expect_err("refused");
        assert_eq!(
            error.to_string(),
            format!("{} holds no PEM certificate: give the node's certificate (chain) in PEM", c.display())
        );

        let (c, k, t) = files(dir.path(), &cert, "", &cert);
        let error = TlsSetup::from_pem_files(&c, &k, &t, true).expect_err("refused");
        assert!(matches!(&error, TlsError::Read { what: "private key", .. }), "{error}");

        let (c, k, t) = files(dir.path(), &cert, &other_key, &other_cert);
        let error = TlsSetup::from_pem_files(&c, &k, &t, true).expect_err("refused");
        assert!(matches!(&error, TlsError::Rustls(_)), "a key that is not the certificate's: {error}");

        let missing = dir.path().join("missing.crt");
        let error = TlsSetup::from_pem_files(&missing, &k, &t, true).expect_err("refused");
        assert!(
            error.to_string().starts_with(&format!("cannot read certificate {}", missing.display())),
            "{error}"
        );
    }
}
