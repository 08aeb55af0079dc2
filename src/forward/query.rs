//! The client's query string, as PowerShell writes it.
//!
//! Its own module because two layers read it: the listener picks the tenant from
//! `DelegatedOrg`, and `winrm` copies the other parameters upstream. PowerShell appends
//! `;PSVersion=…` to the URI's query, so pairs are split on `&` *and* `;` (reference A.4).

/// The raw `key=value` pairs of a client query, split on `&` and `;`.
pub fn query_pairs(query: Option<&str>) -> impl Iterator<Item = &str> {
    query
        .unwrap_or("")
        .split(['&', ';'])
        .filter(|p| !p.is_empty())
}

/// The decoded value of the first query parameter named `key` (case-insensitive).
pub fn query_value(query: Option<&str>, key: &str) -> Option<String> {
    query_pairs(query).find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.eq_ignore_ascii_case(key).then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semicolons_split_like_ampersands_and_values_are_decoded() {
        assert_eq!(
            query_value(Some("a=1;delegatedorg=x%2Ey"), "DelegatedOrg").as_deref(),
            Some("x.y")
        );
        assert_eq!(
            query_pairs(Some("a=1&&b=2;c")).collect::<Vec<_>>(),
            ["a=1", "b=2", "c"]
        );
        assert_eq!(query_value(None, "x"), None);
    }
}
