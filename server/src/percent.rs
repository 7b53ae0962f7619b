//! Percent-decoding (RFC 3986 section 2.1) of the two places the server reads it: query values
//! of the admin API, where `+` also stands for a space (HTML forms), and the user name of an
//! `smtp://` URL, where it does not.

/// Decodes the `%XX` escapes of a URL component (an `smtp://` URL's user name); `+` stays `+`.
/// An escape that is not two hex digits is kept as it is; bytes that are not UTF-8 become U+FFFD.
pub fn decode(s: &str) -> String {
    decode_with(s, false)
}

/// Decodes a query value: the `%XX` escapes, and `+` as a space.
pub fn decode_query(s: &str) -> String {
    decode_with(s, true)
}

fn decode_with(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' => match s
                .get(i + 1..i + 3)
                .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(v) => {
                    out.push(v);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_is_a_space_only_in_queries() {
        assert_eq!(decode_query("a+b%40c.d"), "a b@c.d");
        assert_eq!(decode("alerts+sk%40example.com"), "alerts+sk@example.com");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz%4"), "%zz%4");
        assert_eq!(decode("%ff"), "\u{fffd}");
    }
}
