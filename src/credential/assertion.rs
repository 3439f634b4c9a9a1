//! The certificate credential: a PEM certificate and key signed into RS256 client assertions
//! here (pure Rust, so no OpenSSL ships in the package).

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use azure_core::http::ClientMethodOptions;
use azure_identity::ClientAssertion;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::AuthError;

/// Lifetime of a signed client assertion.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(600);

/// Signs RS256 client assertions with a certificate's private key (Entra ID's certificate
/// credential format: header `x5t` / `x5t#S256`, `aud` = token endpoint, `iss` = `sub` = client id).
pub struct CertificateAssertion {
    client_id: String,
    audience: String,
    key: EncodingKey,
    x5t: String,
    x5t_s256: String,
}

impl fmt::Debug for CertificateAssertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAssertion")
            .field("client_id", &self.client_id)
            .field("audience", &self.audience)
            .field("x5t#S256", &self.x5t_s256)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Serialize)]
struct AssertionClaims<'a> {
    aud: &'a str,
    iss: &'a str,
    sub: &'a str,
    jti: String,
    nbf: u64,
    iat: u64,
    exp: u64,
}

impl CertificateAssertion {
    /// Reads a PEM file holding the certificate (first `CERTIFICATE` block = the app's
    /// certificate) and its RSA private key (`PRIVATE KEY` or `RSA PRIVATE KEY`).
    pub fn load(
        path: &Path,
        client_id: &str,
        audience: &str,
    ) -> Result<CertificateAssertion, AuthError> {
        let fail = |reason: String| AuthError::CertificateFile {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read the file ({e})")))?;
        CertificateAssertion::from_pem(&bytes, client_id, audience).map_err(|reason| {
            let pfx = matches!(
                path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref(),
                Some("pfx" | "p12")
            );
            if pfx || bytes.first() == Some(&0x30) {
                fail(
                    "this looks like a PFX/PKCS#12 file; a PEM file with the certificate and its private key \
                     is needed. Convert it with: openssl pkcs12 -in cert.pfx -out cert.pem -nodes"
                        .to_string(),
                )
            } else {
                fail(reason)
            }
        })
    }

    /// Parses the PEM text; the error says what is missing (never echoes key material).
    pub fn from_pem(
        bytes: &[u8],
        client_id: &str,
        audience: &str,
    ) -> Result<CertificateAssertion, String> {
        let blocks = pem::parse_many(bytes).map_err(|e| format!("not a valid PEM file ({e})"))?;
        let certificate = blocks.iter().find(|b| b.tag() == "CERTIFICATE").ok_or(
            "no CERTIFICATE block; the file must hold the certificate and its private key",
        )?;
        let key_block = blocks
            .iter()
            .find(|b| b.tag().ends_with("PRIVATE KEY"))
            .ok_or(
                "no PRIVATE KEY block; the file must hold the certificate and its private key",
            )?;
        if key_block.tag() == "ENCRYPTED PRIVATE KEY" {
            return Err(
                "the private key is encrypted; export it without a password \
                        (openssl pkcs8 -in key.pem -nocrypt -out key-plain.pem)"
                    .to_string(),
            );
        }
        if key_block.tag() == "EC PRIVATE KEY" {
            return Err(
                "the private key is an EC key; Entra ID certificate credentials need an RSA key"
                    .to_string(),
            );
        }
        let key_pem = pem::encode(key_block);
        let key = EncodingKey::from_rsa_pem(key_pem.as_bytes()).map_err(|_| {
            "the private key is not an RSA key (Entra ID certificate credentials need RSA)"
                .to_string()
        })?;
        let der = certificate.contents();
        Ok(CertificateAssertion {
            client_id: client_id.to_string(),
            audience: audience.to_string(),
            key,
            x5t: URL_SAFE_NO_PAD.encode(Sha1::digest(der)),
            x5t_s256: URL_SAFE_NO_PAD.encode(Sha256::digest(der)),
        })
    }

    /// A fresh signed assertion (new `jti`, valid from now for ten minutes).
    pub fn sign(&self, now: SystemTime) -> Result<String, jsonwebtoken::errors::Error> {
        let now = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut header = Header::new(Algorithm::RS256);
        header.x5t = Some(self.x5t.clone());
        header.x5t_s256 = Some(self.x5t_s256.clone());
        let claims = AssertionClaims {
            aud: &self.audience,
            iss: &self.client_id,
            sub: &self.client_id,
            jti: uuid::Uuid::new_v4().to_string(),
            nbf: now,
            iat: now,
            exp: now + ASSERTION_LIFETIME.as_secs(),
        };
        jsonwebtoken::encode(&header, &claims, &self.key)
    }
}

#[async_trait::async_trait]
impl ClientAssertion for CertificateAssertion {
    async fn secret(
        &self,
        _options: Option<ClientMethodOptions<'_>>,
    ) -> azure_core::Result<String> {
        self.sign(SystemTime::now()).map_err(|e| {
            azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                format!("signing the client assertion failed: {e}"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed RSA certificate and its key, as one PEM file's text.
    fn rsa_certificate() -> (String, rcgen::KeyPair, Vec<u8>) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["signin-export-test".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let pem = format!("{}{}", cert.pem(), key.serialize_pem());
        (pem, key, cert.der().to_vec())
    }

    #[test]
    fn certificate_assertions_are_entra_shaped_and_verify() {
        let (pem, key, der) = rsa_certificate();
        let audience = "https://login.example/tenant-1/oauth2/v2.0/token";
        let assertion = CertificateAssertion::from_pem(pem.as_bytes(), "app-9", audience).unwrap();
        let now = SystemTime::now();
        let jwt = assertion.sign(now).unwrap();
        let header = jsonwebtoken::decode_header(&jwt).unwrap();
        assert_eq!(header.alg, Algorithm::RS256);
        assert_eq!(
            header.x5t_s256.as_deref(),
            Some(URL_SAFE_NO_PAD.encode(Sha256::digest(&der)).as_str())
        );
        assert_eq!(
            header.x5t.as_deref(),
            Some(URL_SAFE_NO_PAD.encode(Sha1::digest(&der)).as_str())
        );

        let decoding =
            jsonwebtoken::DecodingKey::from_rsa_pem(key.public_key_pem().as_bytes()).unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::RS256);
        validation.set_audience(&[audience]);
        validation.set_issuer(&["app-9"]);
        validation.validate_nbf = true;
        let claims = jsonwebtoken::decode::<serde_json::Value>(&jwt, &decoding, &validation)
            .unwrap()
            .claims;
        assert_eq!(claims["sub"], "app-9");
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["nbf"].as_u64().unwrap(),
            600
        );
        let again = jsonwebtoken::decode::<serde_json::Value>(
            &assertion.sign(now).unwrap(),
            &decoding,
            &validation,
        )
        .unwrap();
        assert_ne!(
            claims["jti"], again.claims["jti"],
            "every assertion needs a fresh jti"
        );

        // Another key does not verify it.
        let (_, other, _) = rsa_certificate();
        let wrong =
            jsonwebtoken::DecodingKey::from_rsa_pem(other.public_key_pem().as_bytes()).unwrap();
        assert!(jsonwebtoken::decode::<serde_json::Value>(&jwt, &wrong, &validation).is_err());
        assert!(!format!("{assertion:?}").contains("PRIVATE"));
    }

    #[test]
    fn ec_keys_are_refused_with_a_reason() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let pem = format!("{}{}", cert.pem(), key.serialize_pem());
        let err = CertificateAssertion::from_pem(pem.as_bytes(), "c", "aud").unwrap_err();
        assert!(err.contains("RSA"), "{err}");
    }

    #[test]
    fn certificate_file_errors_explain_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let pfx = dir.path().join("cert.pfx");
        std::fs::write(&pfx, [0x30, 0x82, 0x01, 0x02]).unwrap();
        let err = CertificateAssertion::load(&pfx, "c", "aud").unwrap_err();
        assert!(err.to_string().contains("openssl pkcs12"), "{err}");

        let only_cert = dir.path().join("only.pem");
        std::fs::write(
            &only_cert,
            pem::encode(&pem::Pem::new("CERTIFICATE", vec![1, 2, 3])),
        )
        .unwrap();
        let err = CertificateAssertion::load(&only_cert, "c", "aud").unwrap_err();
        assert!(err.to_string().contains("no PRIVATE KEY"), "{err}");

        let missing = dir.path().join("missing.pem");
        let err = CertificateAssertion::load(&missing, "c", "aud").unwrap_err();
        assert!(err.to_string().contains("cannot read"), "{err}");
        assert!(
            err.to_string().contains("AZURE_CLIENT_CERTIFICATE_PATH"),
            "{err}"
        );
    }
}
