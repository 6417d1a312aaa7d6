//! Certificates made for the TLS tests with rcgen: a CA, and server and client certificates
//! it issues (good, expired, for another name), written to scratch files as PEM.

use std::path::PathBuf;

use rcgen::{
    date_time_ymd, string::Ia5String, BasicConstraints, CertificateParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use super::scratch_file;

/// A certificate authority.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// Its certificate, PEM.
    pub pem: String,
}

/// A certificate and its key, as PEM files.
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cert_pem: String,
    pub key_pem: String,
}

/// What an issued certificate is for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

impl Ca {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("ca key");
        let cert = params.self_signed(&key).expect("ca cert");
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA certificate as a scratch file.
    pub fn file(&self, name: &str) -> PathBuf {
        scratch_file(name, self.pem.as_bytes())
    }

    /// A certificate for `cn` with `sans` (a `scheme://` name is a URI, anything else a DNS
    /// name or an IP address), for `role`; `expired` dates it in 2020.
    pub fn issue(&self, name: &str, cn: &str, sans: &[&str], role: Role, expired: bool) -> Issued {
        let (uris, others): (Vec<&str>, Vec<&str>) = sans.iter().partition(|s| s.contains("://"));
        let others: Vec<String> = others.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(others).expect("params");
        for uri in uris {
            params
                .subject_alt_names
                .push(SanType::URI(Ia5String::try_from(uri).expect("uri")));
        }
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "acme");
        params.extended_key_usages = vec![match role {
            Role::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Role::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        if expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2020, 12, 31);
        }
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("issue");
        let cert_pem = cert.pem();
        let key_pem = key.serialize_pem();
        Issued {
            cert: scratch_file(&format!("{name}.crt"), cert_pem.as_bytes()),
            key: scratch_file(&format!("{name}.key"), key_pem.as_bytes()),
            cert_pem,
            key_pem,
        }
    }

    /// A server certificate for the loopback address and `localhost`.
    pub fn server(&self, name: &str) -> Issued {
        self.issue(name, name, &["127.0.0.1", "localhost"], Role::Server, false)
    }
}
