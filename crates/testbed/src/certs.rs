//! Certificates and keys for a throw-away local control plane: a CA, the API server's serving certificate
//! (valid for 127.0.0.1 and localhost) and a service-account signing key. Generated in memory, written once
//! into the testbed's private directory.

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

pub struct Pki {
    pub ca_pem: String,
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
    pub service_account_key_pem: String,
    pub service_account_public_pem: String,
}

impl Pki {
    pub fn generate() -> Result<Self> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "dify-gitops-testbed-ca");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().context("CA key")?)
            .context("self-signing the testbed CA")?;

        let mut serving = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .context("serving certificate parameters")?;
        serving.distinguished_name.push(DnType::CommonName, "kube-apiserver");
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_key = KeyPair::generate().context("serving key")?;
        let serving_cert = serving.signed_by(&serving_key, &ca).context("signing the serving certificate")?;

        let service_account_key = KeyPair::generate().context("service-account signing key")?;
        Ok(Self {
            ca_pem: ca.pem(),
            serving_cert_pem: serving_cert.pem(),
            serving_key_pem: serving_key.serialize_pem(),
            service_account_key_pem: service_account_key.serialize_pem(),
            service_account_public_pem: service_account_key.public_key_pem(),
        })
    }
}
