//! TLS 1.3 configurations: the relay's identity and the client's pin.

use std::sync::Arc;

use conclave_protocol::sign::{PublicKey, SigningIdentity};
use conclave_protocol::stage1::{ALPN, CHANNEL_BINDING_LABEL};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use zeroize::Zeroizing;

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The certificate could not be made.
    #[error("could not make the relay certificate: {0}")]
    Certificate(#[from] rcgen::Error),
}

/// rustls's ring provider restricted to TLS 1.3 with AES-256-GCM (R7).
pub fn provider() -> Arc<CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites = vec![rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384];
    Arc::new(p)
}

/// The PKCS#8 v1 encoding of an Ed25519 private key is this fixed prefix
/// followed by the 32-byte seed (RFC 8410, section 7).
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The relay's key and the self-signed certificate that carries it.
pub struct RelayIdentity {
    public_key: PublicKey,
    pkcs8: Zeroizing<Vec<u8>>,
    certificate: CertificateDer<'static>,
}

impl core::fmt::Debug for RelayIdentity {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "RelayIdentity({})", self.public_key.fingerprint())
    }
}

impl RelayIdentity {
    /// The identity for a relay key.
    pub fn new(key: &SigningIdentity) -> Result<Self, TlsError> {
        let seed = key.to_seed();
        let mut pkcs8 = Zeroizing::new(Vec::with_capacity(48));
        pkcs8.extend_from_slice(&ED25519_PKCS8_PREFIX);
        pkcs8.extend_from_slice(seed.as_ref());
        let der = PrivatePkcs8KeyDer::from(pkcs8.as_slice());
        let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_ED25519)?;
        let params = rcgen::CertificateParams::new(vec!["conclave-relay".to_string()])?;
        let cert = params.self_signed(&key_pair)?;
        Ok(RelayIdentity {
            public_key: key.public_key(),
            pkcs8,
            certificate: cert.der().clone(),
        })
    }

    /// The key clients pin.
    pub fn public_key(&self) -> PublicKey {
        self.public_key
    }

    /// A TLS 1.3 server configuration presenting this identity.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.pkcs8.to_vec()));
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(vec![self.certificate.clone()], key)?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }
}

/// Accepts exactly one relay: the one that proves it holds the pinned key.
#[derive(Debug)]
struct PinnedRelay {
    key: PublicKey,
}

impl ServerCertVerifier for PinnedRelay {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The certificate is trusted for nothing; the handshake signature,
        // checked against the pinned key below, authenticates the relay.
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not accepted".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        _cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if dss.scheme != SignatureScheme::ED25519 {
            return Err(rustls::Error::General(
                "the relay did not sign with an Ed25519 key".into(),
            ));
        }
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &self.key.0)
            .verify(message, dss.signature())
            .map_err(|_| {
                rustls::Error::General(format!(
                    "the relay does not hold the pinned key {}: refusing to connect",
                    self.key.fingerprint()
                ))
            })?;
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// A TLS 1.3 client configuration that accepts only the relay holding `pinned`.
pub fn client_config(pinned: PublicKey) -> Result<rustls::ClientConfig, TlsError> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedRelay { key: pinned }))
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

/// The name a client presents (the relay ignores it; the pin is what counts).
#[allow(clippy::expect_used)]
pub fn server_name() -> ServerName<'static> {
    // A constant that is a valid DNS name.
    ServerName::try_from("conclave-relay").expect("a valid DNS name")
}

/// Computes the channel binding of a TLS connection (either side).
pub fn channel_binding<D>(conn: &rustls::ConnectionCommon<D>) -> Result<[u8; 32], rustls::Error> {
    let mut out = [0u8; 32];
    conn.export_keying_material(&mut out, CHANNEL_BINDING_LABEL, None)?;
    Ok(out)
}
