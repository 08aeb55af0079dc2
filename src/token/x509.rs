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
}
