//! Email addresses as account names: one canonical form per address, so `Ada@Example.com`,
//! ` ada@example.com `, its NFD spelling and its fullwidth letters are one account, and text
//! that is not an address (or carries control characters such as CR/LF, or invisible format
//! characters such as a right-to-left override) is refused.

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Why an address was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidEmail(pub &'static str);

/// The canonical form of an address: trimmed, Unicode NFKC, lower-cased; checked to look like
/// `local@domain.tld` (RFC 5321 lengths: local part at most 64 bytes, the whole at most 254).
///
/// Refused: control characters (a CR/LF would be a header injection in a mail), and format
/// characters (Unicode general category Cf: the bidirectional overrides and isolates U+202A-E
/// and U+2066-9, zero-width characters, soft hyphen, BOM), which let two addresses that look
/// the same be different accounts (#22; Unicode TR 36 section 2.3, "bidirectional text
/// spoofing"). The same address without them is unaffected.
pub fn canonical(raw: &str) -> Result<String, InvalidEmail> {
    if raw.chars().any(char::is_control) {
        return Err(InvalidEmail(
            "an email address cannot contain control characters",
        ));
    }
    if raw
        .chars()
        .any(|c| c.general_category() == GeneralCategory::Format)
    {
        return Err(InvalidEmail(
            "an email address cannot contain invisible format characters \
             (such as a right-to-left override or a zero-width space); type it without them",
        ));
    }
    let email: String = raw.trim().nfkc().collect::<String>().to_lowercase();
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Err(InvalidEmail("not an email address (no @)"));
    };
    if local.is_empty() || local.len() > 64 || email.len() > 254 {
        return Err(InvalidEmail("not an email address (bad length)"));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 || labels.iter().any(|l| l.is_empty() || l.len() > 63) {
        return Err(InvalidEmail("not an email address (bad domain)"));
    }
    if email.chars().any(char::is_whitespace) || local.contains('@') {
        return Err(InvalidEmail("not an email address"));
    }
    Ok(email)
}

/// The form to look an account up by: the canonical form, or (for text that is not an address,
/// which only an account made before addresses were checked can have) the input as given.
pub fn lookup(raw: &str) -> String {
    canonical(raw).unwrap_or_else(|_| raw.to_string())
}

#[cfg(test)]
mod tests {
    use super::canonical;

    #[test]
    fn one_account_per_address() {
        let ada = canonical("ada@example.com").unwrap();
        for same in [
            "Ada@Example.com",
            " ada@example.com ",
            "ＡＤＡ@ｅｘａｍｐｌｅ.ｃｏｍ",
        ] {
            assert_eq!(canonical(same).unwrap(), ada, "{same}");
        }
        // NFC and NFD spellings of the same letter.
        assert_eq!(
            canonical("jos\u{e9}@example.com").unwrap(),
            canonical("jose\u{301}@example.com").unwrap()
        );
        for bad in [
            "not-an-email",
            "a@b",
            "@example.com",
            "ada@example.com\r\nBcc: x@y.z",
            "ada\n@example.com",
            "a b@example.com",
            "ada@@example.com",
            // Format characters (#22): a right-to-left override, and its isolate, zero-width
            // space and joiner, soft hyphen, a BOM, an Arabic letter mark.
            "ada\u{202E}moc.elpmaxe@example.com",
            "ada@example.com\u{202E}",
            "ada\u{2066}@example.com",
            "a\u{200B}da@example.com",
            "a\u{200D}da@example.com",
            "a\u{AD}da@example.com",
            "\u{FEFF}ada@example.com",
            "ada@exa\u{61C}mple.com",
        ] {
            assert!(canonical(bad).is_err(), "{bad:?}");
        }
    }
}
