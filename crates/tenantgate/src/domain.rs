//! Domain names that route requests to tenants, normalised one way everywhere.
//!
//! ```
//! use tenantgate::Domain;
//!
//! assert_eq!(Domain::parse("ACME.Example.com.:8443").unwrap().as_str(), "acme.example.com");
//! assert!(Domain::parse("127.0.0.1").is_err());
//! assert!(Domain::parse("0x7f.1").is_err(), "browsers read it as an address");
//! ```

use std::fmt;

use crate::Error;

/// A normalised host name: lowercase, IDNA-encoded ASCII, no port, no
/// trailing dot.
///
/// The same normalisation runs when a domain is stored and when a request's
/// host is looked up, so `ACME.example.com.:443` and `acme.example.com` are
/// the same domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Domain(String);

impl Domain {
    /// Normalises `input` (a host, optionally with a port) or explains why it
    /// is not a host name.
    pub fn parse(input: &str) -> Result<Self, Error> {
        let reject = |reason: &str| Error::InvalidDomain {
            domain: input.to_owned(),
            reason: reason.to_owned(),
        };
        if input.len() > 1024 {
            return Err(reject("it is longer than 1024 bytes"));
        }
        let host = strip_port(input.trim()).ok_or_else(|| reject("its port is not a number"))?;
        let host = host.strip_suffix('.').unwrap_or(host);
        if host.is_empty() {
            return Err(reject("it is empty"));
        }
        if host.starts_with('[') || host.parse::<std::net::Ipv4Addr>().is_ok() {
            return Err(reject("it is an IP address, not a domain name"));
        }
        let ascii = if is_plain_ascii(host) {
            // The request guard's hot path: IDNA maps these to themselves, lowercased.
            host.to_ascii_lowercase()
        } else {
            idna::domain_to_ascii_strict(host)
                .map_err(|_| reject("it is not a valid internationalised domain name"))?
        };
        if ends_in_a_number(&ascii) {
            return Err(reject(
                "its last label is a number, so browsers read it as an IPv4 address, not a domain name",
            ));
        }
        if ascii.len() > 253 {
            return Err(reject("it is longer than 253 bytes"));
        }
        for label in ascii.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(reject("each label must be 1 to 63 bytes"));
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                || label.starts_with('-')
                || label.ends_with('-')
            {
                return Err(reject("labels hold letters, digits and inner hyphens only"));
            }
        }
        Ok(Self(ascii))
    }

    /// The normalised name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// True for letters, digits, hyphens and dots only, with no label that
/// IDNA treats specially (`xn--…`, or `--` in the third and fourth place):
/// for these, IDNA's output is the input lowercased.
fn is_plain_ascii(host: &str) -> bool {
    host.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && host.split('.').all(|label| label.get(2..4) != Some("--"))
}

/// The WHATWG URL standard's "ends in a number" test: a host whose last
/// label is decimal digits or `0x` and hex digits is parsed by browsers as
/// an IPv4 address (`1234`, `0x7f.1`, `127.000.000.001`).
fn ends_in_a_number(host: &str) -> bool {
    let last = host.rsplit('.').next().unwrap_or(host);
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    last.strip_prefix("0x")
        .or_else(|| last.strip_prefix("0X"))
        .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Removes a `:port` suffix, returning `None` when the port is not numeric.
fn strip_port(host: &str) -> Option<&str> {
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => {
            (!port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())).then_some(name)
        }
        Some(_) => Some(host),
        None => Some(host),
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_port_trailing_dot_and_idna() {
        assert_eq!(
            Domain::parse("ACME.Example.com.:8443").unwrap().as_str(),
            "acme.example.com"
        );
        assert_eq!(
            Domain::parse("acme.localhost").unwrap().as_str(),
            "acme.localhost"
        );
        assert_eq!(
            Domain::parse("Bücher.example").unwrap().as_str(),
            "xn--bcher-kva.example"
        );
    }

    #[test]
    fn the_ascii_fast_path_agrees_with_idna() {
        for host in [
            "acme.example.com",
            "ACME.Example.COM",
            "a-b.c0",
            "x.localhost",
            "a1.b2.c3",
            "ab-c.d",
        ] {
            let idna = idna::domain_to_ascii_strict(host).unwrap();
            assert!(super::is_plain_ascii(host));
            assert_eq!(Domain::parse(host).unwrap().as_str(), idna, "{host}");
        }
        for host in ["xn--bcher-kva.example", "ab--c.example", "XN--zz.localhost"] {
            assert!(!super::is_plain_ascii(host), "{host} goes through IDNA");
        }
        assert!(
            Domain::parse("xn--zz.localhost").is_err(),
            "invalid punycode is still rejected"
        );
    }

    #[test]
    fn rejects_what_is_not_a_host() {
        for input in [
            "",
            ".",
            "a..b",
            "a b.com",
            "acme.com:port",
            "-a.com",
            "a_b.com",
            "[::1]",
            "127.0.0.1",
            "a/b",
            "x\r\ny",
            "a:1:2",
        ] {
            assert!(Domain::parse(input).is_err(), "{input:?} accepted");
        }
        assert!(Domain::parse(&"a".repeat(2000)).is_err());
    }

    #[test]
    fn refuses_hosts_browsers_read_as_addresses() {
        for input in [
            "127.000.000.001",
            "0x7f.1",
            "0X7F.0.0.1",
            "1234",
            "acme.123",
            "acme.0x",
            "acme.0xff.",
            "１２７.0.0.1",
        ] {
            let refused = Domain::parse(input).unwrap_err().to_string();
            assert!(
                refused.contains("IPv4") || refused.contains("IP address"),
                "{input:?}: {refused}"
            );
        }
        for input in ["123.acme", "acme.0xg", "acme.1a", "0x7f.localhost"] {
            assert!(Domain::parse(input).is_ok(), "{input:?} refused");
        }
    }
}
