//! `DATABASE_URL`: parsed once when the configuration is read, so a bad
//! value stops the start with one line, and shown everywhere with its
//! password masked (`postgres://user:****@host:5432/cruddur`).
//!
//! `sslmode` means what it means to libpq: `disable`; `prefer` (the
//! default: TLS when the server offers it, certificate not checked);
//! `require` (TLS or no connection; the certificate is checked against
//! `sslrootcert` when one is given, else not); `verify-ca` and
//! `verify-full` (TLS with the certificate checked against the public
//! roots plus `sslrootcert`, and the host name too). `sslrootcert=FILE`
//! (PEM, such as RDS's `global-bundle.pem`) is read here, not by
//! tokio-postgres, which does not know it.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_postgres::config::{Host, SslMode};

/// How the connection is encrypted and what of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    Disable,
    /// Encrypt if the server offers it; accept any certificate.
    Prefer,
    /// Encrypt or fail; accept any certificate.
    Require,
    /// Encrypt or fail; the certificate must chain to a trusted root and
    /// name the host.
    Verify,
}

/// A parsed `DATABASE_URL`. Its `Debug` and `Display` mask the password.
#[derive(Clone)]
pub struct DatabaseUrl {
    config: tokio_postgres::Config,
    tls: Tls,
    /// What `verify-ca`/`verify-full` trusts: the public roots and
    /// `sslrootcert`'s, read once when the URL is parsed.
    roots: Arc<RootCertStore>,
    masked: String,
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked)
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked)
    }
}

const EXPECTED: &str = "expected postgres://user:password@host:5432/database";

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let rest = raw
            .strip_prefix("postgres://")
            .or_else(|| raw.strip_prefix("postgresql://"))
            .ok_or_else(|| EXPECTED.to_owned())?;
        let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut tls = Tls::Prefer;
        let mut root_cert = None;
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "sslmode" => {
                    tls = match value {
                        "disable" => Tls::Disable,
                        "allow" | "prefer" => Tls::Prefer,
                        "require" => Tls::Require,
                        "verify-ca" | "verify-full" => Tls::Verify,
                        _ => {
                            return Err(format!(
                                "sslmode={value} is not one of disable, prefer, require, \
                                 verify-ca, verify-full"
                            ));
                        }
                    }
                }
                "sslrootcert" => root_cert = Some(PathBuf::from(value)),
                _ => kept.push(pair),
            }
        }
        if tls == Tls::Require && root_cert.is_some() {
            // As libpq: with a root certificate at hand, require checks it.
            tls = Tls::Verify;
        }
        let mut url = format!("postgresql://{before_query}");
        if !kept.is_empty() {
            url.push('?');
            url.push_str(&kept.join("&"));
        }
        let mut config = tokio_postgres::Config::from_str(&url)
            // tokio-postgres's reasons name the option, never its value.
            .map_err(|err| match std::error::Error::source(&err) {
                Some(why) => format!("{err}: {why}; {EXPECTED}"),
                None => format!("{err}; {EXPECTED}"),
            })?;
        if config.get_hosts().is_empty() {
            return Err(format!("no host; {EXPECTED}"));
        }
        if config.get_user().is_none() {
            return Err(format!("no user; {EXPECTED}"));
        }
        config.ssl_mode(match tls {
            Tls::Disable => SslMode::Disable,
            Tls::Prefer => SslMode::Prefer,
            Tls::Require | Tls::Verify => SslMode::Require,
        });
        // Read now: a missing file is a configuration error, not a
        // connection failure retried until the timeout.
        let roots = Arc::new(roots(root_cert.as_ref())?);
        let masked = masked(&config, tls);
        Ok(DatabaseUrl {
            config,
            tls,
            roots,
            masked,
        })
    }
}

/// A `DATABASE_URL` that did not parse, as a message may show it: the
/// password in the user part and any `password=` parameter masked.
pub fn mask(raw: &str) -> String {
    let (scheme, rest) = raw.split_once("://").unwrap_or(("", raw));
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{name}:****@{host}"),
            None => format!("{user}@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some(("password", _)) => "password=****".to_owned(),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    let scheme = if scheme.is_empty() {
        String::new()
    } else {
        format!("{scheme}://")
    };
    format!("{scheme}{authority}{tail}")
}

/// `postgres://user:****@host:port/database`, plus the TLS mode when it is
/// not the default.
fn masked(config: &tokio_postgres::Config, tls: Tls) -> String {
    let mut out = String::from("postgres://");
    out.push_str(config.get_user().unwrap_or_default());
    if config.get_password().is_some() {
        out.push_str(":****");
    }
    out.push('@');
    let ports = config.get_ports();
    for (index, host) in config.get_hosts().iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        match host {
            Host::Tcp(name) => out.push_str(name),
            Host::Unix(path) => out.push_str(&path.display().to_string()),
        }
        let port = ports.get(index).or(ports.first()).copied().unwrap_or(5432);
        out.push_str(&format!(":{port}"));
    }
    out.push('/');
    out.push_str(namespace(config));
    match tls {
        Tls::Prefer => {}
        Tls::Disable => out.push_str("?sslmode=disable"),
        Tls::Require => out.push_str("?sslmode=require"),
        Tls::Verify => out.push_str("?sslmode=verify-full"),
    }
    out
}

/// The database name, which defaults to the user's name as in libpq.
fn namespace(config: &tokio_postgres::Config) -> &str {
    config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or_default()
}

impl DatabaseUrl {
    /// The connection settings, as parsed (timeouts are the store's to add).
    pub(super) fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// The first host and port: `server.address` and `server.port`.
    pub(super) fn server(&self) -> (String, u16) {
        let host = match self.config.get_hosts().first() {
            Some(Host::Tcp(name)) => name.clone(),
            Some(Host::Unix(path)) => path.display().to_string(),
            None => String::new(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        (host, port)
    }

    /// `db.namespace`: the database's name.
    pub(super) fn namespace(&self) -> &str {
        namespace(&self.config)
    }

    /// The TLS client for this URL's `sslmode` and `sslrootcert`.
    pub(super) fn tls(&self) -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|err| err.to_string())?;
        let config = match self.tls {
            Tls::Verify => builder
                .with_root_certificates(Arc::clone(&self.roots))
                .with_no_client_auth(),
            Tls::Disable | Tls::Prefer | Tls::Require => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(
                    provider.signature_verification_algorithms,
                )))
                .with_no_client_auth(),
        };
        Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
    }
}

/// The public roots, plus the certificates of `sslrootcert`.
fn roots(extra: Option<&PathBuf>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra {
        let certificates = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|err| format!("sslrootcert={}: {err}", path.display()))?;
        if certificates.is_empty() {
            return Err(format!(
                "sslrootcert={}: no PEM certificate in it",
                path.display()
            ));
        }
        for certificate in certificates {
            roots
                .add(certificate)
                .map_err(|err| format!("sslrootcert={}: {err}", path.display()))?;
        }
    }
    Ok(roots)
}

/// libpq's `prefer` and `require`: encrypted, whoever the server is. The
/// handshake's signatures are still checked, so the session is sound.
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_masked_everywhere_it_prints() {
        let url: DatabaseUrl = "postgres://cruddur:s3cret@db.example:6543/cruddur"
            .parse()
            .unwrap();
        assert_eq!(
            url.to_string(),
            "postgres://cruddur:****@db.example:6543/cruddur"
        );
        assert_eq!(format!("{url:?}"), url.to_string());
        assert_eq!(url.server(), ("db.example".to_owned(), 6543));
        assert_eq!(url.namespace(), "cruddur");
    }

    #[test]
    fn sslmode_and_defaults_read_as_libpq_does() {
        let url: DatabaseUrl = "postgresql://me@localhost".parse().unwrap();
        assert_eq!(url.to_string(), "postgres://me@localhost:5432/me");
        assert_eq!(url.tls, Tls::Prefer);
        let url: DatabaseUrl = "postgres://me:pw@h/db?sslmode=verify-full&application_name=x"
            .parse()
            .unwrap();
        assert_eq!(url.tls, Tls::Verify);
        assert_eq!(
            url.to_string(),
            "postgres://me:****@h:5432/db?sslmode=verify-full"
        );
        let url: DatabaseUrl = "postgres://me:pw@h/db?sslmode=disable".parse().unwrap();
        assert_eq!(url.tls, Tls::Disable);
    }

    #[test]
    fn an_unparsed_url_is_shown_masked() {
        assert_eq!(
            mask("postgres://me:hunter2@h:notaport/db?password=hunter2&sslmode=x"),
            "postgres://me:****@h:notaport/db?password=****&sslmode=x"
        );
        assert_eq!(mask("mysql://me@h"), "mysql://me@h");
    }

    #[test]
    fn bad_urls_say_why_without_the_password() {
        for (raw, why) in [
            ("mysql://me:hunter2@h/db", "expected postgres://"),
            ("postgres://me:hunter2@h/db?sslmode=maybe", "sslmode=maybe"),
            (
                "postgres://me:hunter2@h:notaport/db",
                "expected postgres://",
            ),
            ("postgres://me:hunter2@h/db?colour=blue", "colour"),
            (
                "postgres://me:hunter2@h/db?sslrootcert=/no/such/bundle.pem",
                "sslrootcert=/no/such/bundle.pem",
            ),
        ] {
            let err = raw.parse::<DatabaseUrl>().unwrap_err();
            assert!(err.contains(why), "{raw}: {err}");
            assert!(!err.contains("hunter2"), "{raw}: {err}");
        }
    }
}
