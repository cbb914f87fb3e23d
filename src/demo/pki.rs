//! Throw-away TLS material for the demo: a private CA and a server certificate for
//! central on 127.0.0.1 / localhost, written as PEM files into the demo's directory. The
//! agents pin the CA, exactly as a deployment pins its own.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// Paths of the generated PEM files.
#[derive(Debug, Clone)]
pub struct DemoPki {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

/// Generates the CA and central's server certificate into `dir`.
///
/// # Errors
/// When key generation or writing a file fails.
pub fn generate(dir: &Path) -> Result<DemoPki> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "aeogate demo CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)
        .context("creating the demo CA")?;

    let server_key = KeyPair::generate()?;
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "aeogate central (demo)");
    let server = params
        .signed_by(&server_key, &ca)
        .context("signing central's certificate")?;

    let out = DemoPki {
        ca_cert: dir.join("ca.pem"),
        server_cert: dir.join("central.pem"),
        server_key: dir.join("central.key"),
    };
    std::fs::write(&out.ca_cert, ca.pem()).context("writing ca.pem")?;
    std::fs::write(&out.server_cert, server.pem()).context("writing central.pem")?;
    std::fs::write(&out.server_key, server_key.serialize_pem()).context("writing central.key")?;
    Ok(out)
}
