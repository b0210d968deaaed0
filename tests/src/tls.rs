//! TLS material for tests: a private CA and a server certificate it signed, made with rcgen.

/// A private CA and a server certificate for `localhost` signed by it, as PEM files (removed
/// when dropped).
pub struct TestCerts {
    _dir: tempfile::TempDir,
    /// The CA's certificate.
    pub ca: std::path::PathBuf,
    /// The server's certificate.
    pub cert: std::path::PathBuf,
    /// The server's private key.
    pub key: std::path::PathBuf,
}

impl TestCerts {
    /// A fresh CA and server certificate.
    pub fn generate() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sluice test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().expect("broker key");
        let cert = CertificateParams::new(vec!["localhost".to_string()])
            .expect("broker params")
            .signed_by(&key, &issuer)
            .expect("broker certificate");
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, pem: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).expect("write PEM");
            path
        };
        TestCerts {
            ca: write("ca.pem", ca_cert.pem()),
            cert: write("broker.pem", cert.pem()),
            key: write("broker.key", key.serialize_pem()),
            _dir: dir,
        }
    }
}
