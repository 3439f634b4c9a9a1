//! The test certificate authority: a CA and a `localhost`/`127.0.0.1` server certificate made
//! with rcgen once per test process, trusted by every HTTPS client through `SSL_CERT_FILE`, and
//! an HTTPS server helper (axum-server + rustls) for fakes that must be reached over TLS.
//!
//! Why `SSL_CERT_FILE`: reqwest 0.13 (as azure_core uses it) verifies servers with
//! rustls-platform-verifier, which on Linux takes its roots from rustls-native-certs; that crate
//! reads *only* `SSL_CERT_FILE`/`SSL_CERT_DIR` when either is set. So the production code needs
//! no test hook: set the variable before the first client is built (the roots are loaded when a
//! client's TLS config is created) and the test CA is the one trusted root.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Once, OnceLock};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

/// The test CA and the server certificate it signed, as PEM text and as files.
pub struct TestCa {
    /// The CA certificate (the file `SSL_CERT_FILE` points at).
    pub ca_pem_path: PathBuf,
    /// The server certificate for `localhost` and `127.0.0.1`, PEM.
    pub cert_pem: String,
    /// The server certificate's private key, PKCS#8 PEM.
    pub key_pem: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// Keeps the folder alive for the whole test process.
    _dir: tempfile::TempDir,
}

/// The process-wide test CA (generated on first use).
pub fn test_ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| generate().expect("generate the test CA"))
}

fn generate() -> Result<TestCa, Box<dyn std::error::Error>> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    let mut ca_name = DistinguishedName::new();
    ca_name.push(DnType::CommonName, "signin-export test CA");
    ca_params.distinguished_name = ca_name;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    let mut server_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    let mut server_name = DistinguishedName::new();
    server_name.push(DnType::CommonName, "localhost");
    server_params.distinguished_name = server_name;
    server_params.is_ca = IsCa::ExplicitNoCa;
    server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate()?;
    let server_cert = server_params.signed_by(&server_key, &ca)?;

    let dir = tempfile::Builder::new()
        .prefix("signin-export-ca")
        .tempdir()?;
    let ca_pem = ca.pem();
    let cert_pem = server_cert.pem();
    let key_pem = server_key.serialize_pem();
    let ca_pem_path = dir.path().join("ca.pem");
    let cert_path = dir.path().join("server.pem");
    let key_path = dir.path().join("server.key");
    std::fs::write(&ca_pem_path, &ca_pem)?;
    std::fs::write(&cert_path, &cert_pem)?;
    std::fs::write(&key_path, &key_pem)?;
    Ok(TestCa {
        ca_pem_path,
        cert_pem,
        key_pem,
        cert_path,
        key_path,
        ca_pem,
        _dir: dir,
    })
}

/// Points `SSL_CERT_FILE` at the test CA, once per process. Call it before building any HTTPS
/// client (every helper that serves HTTPS calls it). Subprocesses inherit it.
pub fn trust_test_ca() {
    static TRUST: Once = Once::new();
    TRUST.call_once(|| {
        let ca = test_ca();
        // SAFETY-relevant note: setting the environment while other threads read it is racy; this
        // runs once, before any TLS client in this process is built (every HTTPS helper calls it
        // first), and the value never changes afterwards.
        std::env::set_var("SSL_CERT_FILE", &ca.ca_pem_path);
    });
}

/// The rustls server config for the test server certificate.
pub async fn rustls_config() -> axum_server::tls_rustls::RustlsConfig {
    let ca = test_ca();
    axum_server::tls_rustls::RustlsConfig::from_pem(
        ca.cert_pem.clone().into_bytes(),
        ca.key_pem.clone().into_bytes(),
    )
    .await
    .expect("rustls config from the test certificate")
}

/// Serves `router` over HTTPS (test CA) on `127.0.0.1:0` in the background; returns the address.
pub async fn spawn_https(router: axum::Router) -> SocketAddr {
    trust_test_ca();
    let _ = rustls_provider();
    let config = rustls_config().await;
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind 127.0.0.1:0");
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    let addr = listener.local_addr().expect("local addr");
    let server = axum_server::from_tcp_rustls(listener, config);
    tokio::spawn(async move {
        let _ = server.serve(router.into_make_service()).await;
    });
    addr
}

/// Installs the process-default rustls crypto provider once (several are compiled in, so rustls
/// cannot pick one by itself).
fn rustls_provider() -> bool {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    *INSTALLED.get_or_init(|| {
        tokio_rustls::rustls::crypto::aws_lc_rs::default_provider()
            .install_default()
            .is_ok()
    })
}
