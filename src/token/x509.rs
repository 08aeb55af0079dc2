//! Just enough DER to read an RSA public key out of a certificate and out of a private key.
//!
//! Two uses: the credential loader checks that the configured key belongs to the configured
//! certificate (a mismatch otherwise surfaces only as Entra's puzzling AADSTS700027), and the
//! simulated Entra finds the public key of a certificate it is asked to register. A full X.509
//! parser would be a large dependency for reading three fields; anything that does not look
//! like the expected structure yields `None`, never a panic.

/// One DER TLV with tag `tag` at the start of `input`: (contents, rest).
fn tlv(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, rest) = input.split_first()?;
    if t != tag {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, r) = rest.split_at(n);
        rest = r;
        bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// The subject public key bits of an X.509 certificate (PKCS#1 `RSAPublicKey` for RSA).
pub fn certificate_public_key(der: &[u8]) -> Option<Vec<u8>> {
    let (cert, _) = tlv(der, 0x30)?;
    let (tbs, _) = tlv(cert, 0x30)?;
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = tlv(rest, 0xa0)?.1; // [0] version
    }
    for tag in [0x02, 0x30, 0x30, 0x30, 0x30] {
        rest = tlv(rest, tag)?.1; // serial, signature, issuer, validity, subject
    }
    let (spki, _) = tlv(rest, 0x30)?;
    let (_, after_alg) = tlv(spki, 0x30)?;
    let (bits, _) = tlv(after_alg, 0x03)?;
    let (unused, key) = bits.split_first()?;
    (*unused == 0).then(|| key.to_vec())
}

/// `notBefore` and `notAfter` of an X.509 certificate.
pub fn certificate_validity(der: &[u8]) -> Option<(std::time::SystemTime, std::time::SystemTime)> {
    let (cert, _) = tlv(der, 0x30)?;
    let (tbs, _) = tlv(cert, 0x30)?;
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = tlv(rest, 0xa0)?.1; // [0] version
    }
    for tag in [0x02, 0x30, 0x30] {
        rest = tlv(rest, tag)?.1; // serial, signature, issuer
    }
    let (validity, _) = tlv(rest, 0x30)?;
    let (not_before, rest) = asn1_time(validity)?;
    let (not_after, _) = asn1_time(rest)?;
    Some((not_before, not_after))
}

/// A UTCTime (`YYMMDDHHMMSSZ`, years 1950–2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn asn1_time(input: &[u8]) -> Option<(std::time::SystemTime, &[u8])> {
    let (&tag, _) = input.split_first()?;
    let (text, rest) = tlv(input, tag)?;
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let (year, text) = match tag {
        0x17 => {
            let yy: i32 = text.get(..2)?.parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &text[2..])
        }
        0x18 => (text.get(..4)?.parse().ok()?, &text[4..]),
        _ => return None,
    };
    let field = |i: usize| -> Option<u32> { text.get(i..i + 2)?.parse().ok() };
    let at = chrono::NaiveDate::from_ymd_opt(year, field(0)?, field(2)?)?
        .and_hms_opt(field(4)?, field(6)?, field(8)?)?
        .and_utc();
    Some((at.into(), rest))
}

fn unsigned(v: &[u8]) -> Vec<u8> {
    let i = v
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(v.len().saturating_sub(1));
    v[i..].to_vec()
}

/// Modulus and exponent (unsigned big-endian) of a PKCS#1 `RSAPublicKey`.
pub fn rsa_public_components(pkcs1: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let (seq, _) = tlv(pkcs1, 0x30)?;
    let (n, rest) = tlv(seq, 0x02)?;
    let (e, _) = tlv(rest, 0x02)?;
    Some((unsigned(n), unsigned(e)))
}

/// Modulus and exponent of an RSA private key in PKCS#1 `RSAPrivateKey` or PKCS#8 form.
pub fn rsa_private_key_components(der: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let (seq, _) = tlv(der, 0x30)?;
    let (_, rest) = tlv(seq, 0x02)?; // version
    if let Some((_, after_alg)) = tlv(rest, 0x30) {
        // PKCS#8: AlgorithmIdentifier, then the PKCS#1 key in an OCTET STRING.
        let (inner, _) = tlv(after_alg, 0x04)?;
        return rsa_private_key_components(inner);
    }
    let (n, rest) = tlv(rest, 0x02)?;
    let (e, _) = tlv(rest, 0x02)?;
    Some((unsigned(n), unsigned(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_none_not_a_panic() {
        for input in [
            &b""[..],
            b"\x30",
            b"\x30\x84\xff\xff\xff\xff",
            b"\x30\x03\x02\x01\x00",
            b"\x02\x01",
        ] {
            assert!(certificate_public_key(input).is_none());
            assert!(rsa_public_components(input).is_none());
            assert!(rsa_private_key_components(input).is_none());
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = certificate_public_key(&bytes);
            let _ = rsa_private_key_components(&bytes);
            let _ = rsa_public_components(&bytes);
        }
    }

    #[test]
    fn validity_is_read_from_utc_and_generalized_time() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 2, 29);
        params.not_after = rcgen::date_time_ymd(2051, 12, 31); // past 2049: GeneralizedTime
        let der = params.self_signed(&key).unwrap().der().to_vec();
        let (from, until) = certificate_validity(&der).unwrap();
        let day = |t: std::time::SystemTime| {
            chrono::DateTime::<chrono::Utc>::from(t)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        };
        assert_eq!(day(from), "2020-02-29 00:00:00");
        assert_eq!(day(until), "2051-12-31 00:00:00");
        assert_eq!(certificate_validity(b"not a certificate"), None);
    }
}
