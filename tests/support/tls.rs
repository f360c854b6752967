//! The tests' TLS servers' certificates: a throw-away CA (the testbed's [`TestCa`], the one rcgen CA of the
//! workspace) and a serving certificate it signed. Used by the git HTTPS server and Traefik's default certificate.

use std::path::Path;

use dify_gitops_testbed::certs::{Serving, TestCa};

/// A fresh CA named `ca_name`, its certificate written (PEM) to `ca_file` for clients to trust, and a serving
/// certificate for `server_name` valid for `names` (IP addresses or DNS names), signed by it.
pub fn serving_certificate(ca_file: &Path, ca_name: &str, server_name: &str, names: &[&str]) -> Serving {
    let ca = TestCa::new(ca_name).expect("test CA");
    std::fs::write(ca_file, ca.pem()).unwrap_or_else(|e| panic!("writing {}: {e}", ca_file.display()));
    ca.serving(server_name, names).expect("serving certificate")
}
