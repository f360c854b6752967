//! Certificates and keys for throw-away servers: a test CA ([`TestCa`]) that signs serving certificates (for the
//! testbed's API server, and for the tests' own HTTPS servers), and the testbed's [`Pki`]. Generated in memory;
//! the testbed writes its set once into its private directory.

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// A self-signed CA for tests: its certificate is what clients are told to trust.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A serving certificate and its key, in PEM and DER.
pub struct Serving {
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    pub key_pem: String,
    /// PKCS#8.
    pub key_der: Vec<u8>,
}

impl TestCa {
    pub fn new(common_name: &str) -> Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().context("CA key")?)
            .with_context(|| format!("self-signing the test CA {common_name}"))?;
        Ok(Self { issuer })
    }

    /// The CA certificate (PEM), for clients to trust.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `names` (IP addresses or DNS names), signed by this CA.
    pub fn serving(&self, common_name: &str, names: &[&str]) -> Result<Serving> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).context("serving certificate parameters")?;
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().context("serving key")?;
        let cert = params.signed_by(&key, &self.issuer).context("signing the serving certificate")?;
        Ok(Serving {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
        })
    }
}

pub struct Pki {
    pub ca_pem: String,
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
    pub service_account_key_pem: String,
    pub service_account_public_pem: String,
}

impl Pki {
    /// A CA, the API server's serving certificate (valid for 127.0.0.1 and localhost) and a service-account
    /// signing key.
    pub fn generate() -> Result<Self> {
        let ca = TestCa::new("dify-gitops-testbed-ca")?;
        let serving = ca.serving("kube-apiserver", &["127.0.0.1", "localhost"])?;
        let service_account_key = KeyPair::generate().context("service-account signing key")?;
        Ok(Self {
            ca_pem: ca.pem(),
            serving_cert_pem: serving.cert_pem,
            serving_key_pem: serving.key_pem,
            service_account_key_pem: service_account_key.serialize_pem(),
            service_account_public_pem: service_account_key.public_key_pem(),
        })
    }
}
