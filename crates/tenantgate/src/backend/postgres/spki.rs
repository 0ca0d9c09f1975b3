//! The public key of an X.509 certificate of any version, read from its
//! DER without judging the rest: what checking a TLS handshake's signature
//! needs when the certificate itself is not checked (`sslmode=prefer` and
//! `require` without a root certificate). A stock Citus node presents an
//! X.509 **v1** certificate, which the certificate parser rustls uses
//! refuses outright; libpq reads it.

/// The `SubjectPublicKeyInfo` of the DER certificate `cert`, as DER, or
/// `None` when `cert` is not shaped like a certificate.
pub(crate) fn of_certificate(cert: &[u8]) -> Option<&[u8]> {
    let (certificate, _) = element(cert, SEQUENCE)?;
    let (mut tbs, _) = element(content(certificate)?, SEQUENCE)?;
    tbs = content(tbs)?;
    // [0] EXPLICIT version: present from v2 on, absent in v1.
    if tbs.first() == Some(&0xa0) {
        tbs = element(tbs, 0xa0)?.1;
    }
    // serialNumber, signature, issuer, validity, subject.
    for tag in [INTEGER, SEQUENCE, SEQUENCE, SEQUENCE, SEQUENCE] {
        tbs = element(tbs, tag)?.1;
    }
    Some(element(tbs, SEQUENCE)?.0)
}

const INTEGER: u8 = 0x02;
const SEQUENCE: u8 = 0x30;

/// The first element of `input` if it has `tag`: (the whole element, the
/// rest of `input`).
fn element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    if *input.first()? != tag {
        return None;
    }
    let (header, length) = length(&input[1..])?;
    let end = 1 + header + length;
    (end <= input.len()).then(|| (&input[..end], &input[end..]))
}

/// The contents of a whole element.
fn content(element: &[u8]) -> Option<&[u8]> {
    let (header, length) = length(&element[1..])?;
    element.get(1 + header..1 + header + length)
}

/// A DER length: (bytes it took, the length).
fn length(input: &[u8]) -> Option<(usize, usize)> {
    let first = *input.first()?;
    if first < 0x80 {
        return Some((1, usize::from(first)));
    }
    let count = usize::from(first & 0x7f);
    if count == 0 || count > 4 {
        return None;
    }
    let bytes = input.get(1..=count)?;
    Some((
        1 + count,
        bytes.iter().fold(0, |n, b| (n << 8) | usize::from(*b)),
    ))
}

#[cfg(test)]
mod tests {
    use super::of_certificate;

    /// A minimal v1 certificate and a v3 one (with `[0]` version) around the
    /// same key; the key is found in both, garbage is refused.
    #[test]
    fn the_key_is_found_with_and_without_a_version() {
        let spki = [0x30, 0x03, 0x01, 0x02, 0x03];
        let fields = |version: &[u8]| {
            let mut tbs = version.to_vec();
            tbs.extend([0x02, 0x01, 0x07]); // serial
            for _ in 0..4 {
                tbs.extend([0x30, 0x00]); // signature, issuer, validity, subject
            }
            tbs.extend(spki);
            let mut tbs_element = vec![0x30, tbs.len() as u8];
            tbs_element.extend(tbs);
            let mut cert = vec![0x30, tbs_element.len() as u8];
            cert.extend(tbs_element);
            cert
        };
        assert_eq!(of_certificate(&fields(&[])), Some(&spki[..]));
        assert_eq!(
            of_certificate(&fields(&[0xa0, 0x03, 0x02, 0x01, 0x02])),
            Some(&spki[..])
        );
        assert_eq!(of_certificate(&[0x30, 0x05, 0x01]), None);
        assert_eq!(of_certificate(&[]), None);
    }
}
