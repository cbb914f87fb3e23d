//! A test certificate authority and the certificates it signs (rcgen), shared by the TLS
//! tests of every crate (by `#[path]`).
#![allow(dead_code)]

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

/// A certificate authority: its certificate (PEM) and the issuer that signs with its key.
pub struct Ca {
    pub pem: String,
    pub issuer: Issuer<'static, KeyPair>,
}

/// A new CA whose common name is `name`.
pub fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().expect("ca key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key).expect("ca cert");
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A certificate for `names` (the first is also its common name) signed by `ca`, for
/// client authentication when `client`: (certificate PEM, key PEM).
pub fn leaf(ca: &Ca, names: &[&str], client: bool) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let sans = names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
    let mut params = CertificateParams::new(sans).expect("params");
    if let Some(first) = names.first() {
        params.distinguished_name.push(DnType::CommonName, *first);
    }
    if client {
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    }
    let cert = params.signed_by(&key, &ca.issuer).expect("cert");
    (cert.pem(), key.serialize_pem())
}
