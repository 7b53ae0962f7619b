//! Mail templates' placeholders (`{link}`, `{code}`, `{email}`...): which a kind of mail knows,
//! finding them in a template, and refusing a template with a missing or unknown one when the
//! config is read (docs/SERVER.md, "Mail"). Filling them in is the mail worker's (mail.rs).

/// The placeholders of confirmation and reset mails.
pub const LINK_PLACEHOLDERS: &[&str] = &["link", "email", "app", "expires_minutes", "expires_in"];
/// The placeholders of sign-in code mails.
pub const CODE_PLACEHOLDERS: &[&str] = &["code", "email", "app", "expires_minutes", "expires_in"];

/// The `{word}` placeholders of a template (letters, digits, `_`), in order: what the mail
/// worker would replace if it knew them. CSS such as `p { color: red }` is no placeholder.
pub fn placeholders(template: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        rest = &rest[open + 1..];
        if let Some(close) = rest.find(['{', '}'])
            && rest.as_bytes()[close] == b'}'
            && close > 0
            && rest[..close]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            found.push(&rest[..close]);
        }
    }
    found
}

/// Refuses a template (`what` names it: a file's path or a subject) that lacks the placeholder
/// `required` or has one that is not in `known` (a typo such as `{emial}` would be mailed as
/// is). The error says which and lists the known ones.
pub fn check_template(
    what: &str,
    template: &str,
    required: Option<&str>,
    known: &[&str],
) -> Result<(), String> {
    let list = || {
        known
            .iter()
            .map(|k| format!("{{{k}}}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(unknown) = placeholders(template)
        .into_iter()
        .find(|p| !known.contains(p))
    {
        return Err(format!(
            "{what} has an unknown placeholder {{{unknown}}}: the known ones are {}",
            list()
        ));
    }
    if let Some(r) = required
        && !placeholders(template).contains(&r)
    {
        return Err(format!(
            "{what} has no {{{r}}} placeholder: the mail must carry it (placeholders: {})",
            list()
        ));
    }
    Ok(())
}
