//! Connection strings as libpq reads them, including what tokio-postgres
//! does not: `sslmode=verify-ca` / `verify-full` with `sslrootcert=FILE` or
//! `sslrootcert=system`. Those options are taken out of the URL (or the
//! `key=value` form) before the rest goes to tokio-postgres, and decide how
//! the TLS connector checks the server.

use std::{path::PathBuf, str::FromStr, sync::Arc};

use rustls::{
    client::{
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
        WebPkiServerVerifier,
    },
    crypto::CryptoProvider,
    pki_types::{pem::PemObject, CertificateDer, ServerName, UnixTime},
    CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::Config;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::{backend::redact, Error};

/// The `application_name` tenantgate's connections carry unless the
/// connection string names one, so they can be told apart in
/// `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "tenantgate";

/// How the server's certificate is checked (libpq's `sslmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verify {
    /// `disable`, `allow`, `prefer`, `require` without a root certificate:
    /// encrypted when TLS is used, the server not authenticated.
    Nothing,
    /// `verify-ca` (or `require` with `sslrootcert`): the certificate chains
    /// to a trusted root; the host name is not checked.
    Chain,
    /// `verify-full`: the chain and the host name.
    ChainAndHost,
}

/// Where trusted roots come from (`sslrootcert`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Roots {
    /// A PEM file.
    File(PathBuf),
    /// The operating system's store (`sslrootcert=system`).
    System,
}

/// A parsed connection string: the tokio-postgres configuration and the
/// TLS connector that checks the server as `sslmode` asks.
pub struct ConnectionSettings {
    /// Everything tokio-postgres understands.
    pub config: Config,
    /// The TLS connector for `config`.
    pub tls: MakeRustlsConnect,
}

/// Parses a libpq connection URL (`postgres://…`) or `key=value` string.
/// Errors never contain the password.
pub fn settings(conninfo: &str) -> Result<ConnectionSettings, Error> {
    let invalid = |reason: String| {
        Error::Config(format!(
            "cannot use database URL {:?}: {reason}",
            redact(conninfo)
        ))
    };
    let mut params = Params::parse(conninfo).map_err(invalid)?;
    let sslmode = params.take("sslmode");
    let rootcert = params.take("sslrootcert").map(|r| match r.as_str() {
        "system" => Roots::System,
        _ => Roots::File(PathBuf::from(r)),
    });
    let (mode, verify) = match (sslmode.as_deref().unwrap_or("prefer"), &rootcert) {
        ("disable", _) => ("disable", Verify::Nothing),
        ("allow" | "prefer", _) => ("prefer", Verify::Nothing),
        ("require", None) => ("require", Verify::Nothing),
        // libpq: with a root certificate, `require` behaves as `verify-ca`.
        ("require" | "verify-ca", _) => ("require", Verify::Chain),
        ("verify-full", _) => ("require", Verify::ChainAndHost),
        (other, _) => {
            return Err(invalid(format!(
            "sslmode={other} is not one of disable, allow, prefer, require, verify-ca, verify-full"
        )))
        }
    };
    params.set("sslmode", mode);
    if params.get("application_name").is_none() {
        params.set("application_name", APPLICATION_NAME);
    }
    let mut config = Config::from_str(&params.render()).map_err(|e| invalid(e.to_string()))?;
    add_password_from_file(&mut config);
    let chain = match verify {
        Verify::Nothing => None,
        Verify::Chain | Verify::ChainAndHost => {
            let roots = load_roots(rootcert.as_ref()).map_err(invalid)?;
            Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                    .build()
                    .map_err(|e| invalid(format!("unusable root certificates: {e}")))?,
            )
        }
    };
    let tls = tls_config(Arc::new(Verifier {
        provider: provider(),
        chain,
        check_host: verify == Verify::ChainAndHost,
    }));
    Ok(ConnectionSettings { config, tls })
}

/// Without a password in the connection string, takes the password file's
/// (see [`super::pgpass`]) for the first host, as libpq does.
pub(crate) fn add_password_from_file(config: &mut Config) {
    if config.get_password().is_some() {
        return;
    }
    let Some(file) = super::pgpass::location() else {
        return;
    };
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => "localhost".to_owned(),
    };
    let user = config
        .get_user()
        .map(str::to_owned)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_default();
    let target = super::pgpass::Target {
        host: &host,
        port: config.get_ports().first().copied().unwrap_or(5432),
        database: config.get_dbname().unwrap_or(&user),
        user: &user,
    };
    if let Some(password) = super::pgpass::password_for(&file, &target) {
        config.password(password);
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_config(verifier: Arc<dyn ServerCertVerifier>) -> MakeRustlsConnect {
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    MakeRustlsConnect::new(config)
}

/// The trusted roots: `sslrootcert`, else libpq's default
/// `~/.postgresql/root.crt`.
fn load_roots(roots: Option<&Roots>) -> Result<RootCertStore, String> {
    let default = || {
        std::env::var_os("HOME")
            .map(|home| PathBuf::from(home).join(".postgresql/root.crt"))
            .filter(|p| p.exists())
    };
    let mut store = RootCertStore::empty();
    match roots.cloned().or_else(|| default().map(Roots::File)) {
        Some(Roots::System) => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err("sslrootcert=system: the operating system's certificate store holds no usable certificate".into());
            }
        }
        Some(Roots::File(path)) => {
            let certs = CertificateDer::pem_file_iter(&path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("cannot read sslrootcert {}: {e}", path.display()))?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!(
                    "sslrootcert {} holds no usable certificate",
                    path.display()
                ));
            }
        }
        None => {
            return Err(
                "verifying the server needs sslrootcert=FILE (or sslrootcert=system, or ~/.postgresql/root.crt)".into(),
            )
        }
    }
    Ok(store)
}

/// The options of a connection string, in order, so it can be rebuilt
/// without the ones tokio-postgres refuses.
struct Params {
    /// `postgres://…` up to the `?`; `None` for the key=value form.
    url_base: Option<String>,
    pairs: Vec<(String, String)>,
}

impl Params {
    fn parse(conninfo: &str) -> Result<Self, String> {
        let trimmed = conninfo.trim();
        if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
            let (base, query) = trimmed.split_once('?').unwrap_or((trimmed, ""));
            let pairs = query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    Ok((percent_decode(k)?, percent_decode(v)?))
                })
                .collect::<Result<_, String>>()?;
            return Ok(Self {
                url_base: Some(base.to_owned()),
                pairs,
            });
        }
        Ok(Self {
            url_base: None,
            pairs: key_values(trimmed)?,
        })
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn take(&mut self, key: &str) -> Option<String> {
        let at = self.pairs.iter().rposition(|(k, _)| k == key)?;
        let (_, value) = self.pairs.remove(at);
        self.pairs.retain(|(k, _)| k != key);
        Some(value)
    }

    fn set(&mut self, key: &str, value: &str) {
        self.pairs.retain(|(k, _)| k != key);
        self.pairs.push((key.to_owned(), value.to_owned()));
    }

    fn render(&self) -> String {
        match &self.url_base {
            Some(base) => {
                let query: Vec<String> = self
                    .pairs
                    .iter()
                    .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
                    .collect();
                format!("{base}?{}", query.join("&"))
            }
            None => self
                .pairs
                .iter()
                .map(|(k, v)| format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'")))
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

/// libpq's `key=value` form: values unquoted (up to whitespace) or in
/// single quotes with `\'` and `\\` escapes.
fn key_values(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && !c.is_whitespace())).collect();
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!("expected '=' after {key:?}"));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err(format!("unterminated quoted value for {key:?}")),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("a '%' not followed by two hex digits")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "a percent-encoded value is not UTF-8".to_owned())
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Checks the server's certificate as `sslmode` asks; the handshake
/// signatures are checked in every mode (as libpq does even for `require`).
#[derive(Debug)]
struct Verifier {
    provider: Arc<CryptoProvider>,
    /// `None`: any certificate (`require`); else the chain against the roots.
    chain: Option<Arc<WebPkiServerVerifier>>,
    /// Whether the host name must match too (`verify-full`).
    check_host: bool,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_host => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let verified = rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        );
        match verified {
            // An unchecked certificate the parser refuses (X.509 v1): the
            // server is not authenticated at this sslmode whatever its
            // certificate says, as with libpq, so the connection proceeds.
            Err(rustls::Error::InvalidCertificate(_)) if self.chain.is_none() => {
                Ok(HandshakeSignatureValid::assertion())
            }
            other => other,
        }
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        match rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms) {
            // An unchecked certificate the parser refuses (X.509 v1): the
            // signature is still checked, against the key it carries.
            Err(rustls::Error::InvalidCertificate(_)) if self.chain.is_none() => {
                let spki = super::spki::of_certificate(cert).ok_or(
                    rustls::Error::InvalidCertificate(CertificateError::BadEncoding),
                )?;
                rustls::crypto::verify_tls13_signature_with_raw_key(
                    message,
                    &rustls::pki_types::SubjectPublicKeyInfoDer::from(spki),
                    dss,
                    algorithms,
                )
            }
            other => other,
        }
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_out_what_tokio_postgres_refuses_and_names_the_application() {
        let mut p =
            Params::parse("postgres://u:pw@h:5/db?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.crt")
                .unwrap();
        assert_eq!(p.take("sslmode").as_deref(), Some("verify-full"));
        assert_eq!(p.take("sslrootcert").as_deref(), Some("/tmp/ca.crt"));
        p.set("sslmode", "require");
        assert_eq!(p.render(), "postgres://u:pw@h:5/db?sslmode=require");
        let mut kv = Params::parse(
            "host=other.example hostaddr=127.0.0.1 password='it\\'s' sslmode = verify-ca",
        )
        .unwrap();
        assert_eq!(kv.get("password"), Some("it's"));
        assert_eq!(kv.take("sslmode").as_deref(), Some("verify-ca"));
        assert_eq!(
            kv.render(),
            "host='other.example' hostaddr='127.0.0.1' password='it\\'s'"
        );
    }

    #[test]
    fn every_sslmode_is_understood_and_a_bad_one_refused_without_the_password() {
        for mode in ["disable", "allow", "prefer", "require"] {
            let s = settings(&format!("postgres://u@h/db?sslmode={mode}")).unwrap();
            assert_eq!(s.config.get_application_name(), Some(APPLICATION_NAME));
        }
        let named = settings("host=h dbname=d application_name=mine").unwrap();
        assert_eq!(named.config.get_application_name(), Some("mine"));
        let e = settings("postgres://u:s3cret@h/db?sslmode=bogus")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("sslmode=bogus") && !e.contains("s3cret"), "{e}");
        let e = settings("postgres://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent.crt")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("/nonexistent.crt"), "{e}");
    }
}
