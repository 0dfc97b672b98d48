//! What the HTTP clients (gateway, native) share that is not a layer of the
//! request stack: describing a transport error without leaking a cap or a
//! password.

use crate::endpoint::redact_url;

/// A short, cap-free description of a transport error. reqwest's Display
/// of a connection error is a chain; this keeps its innermost cause, which
/// says what actually happened ("Connection refused"). Shared by every
/// HTTP backend.
pub fn describe_reqwest(e: &reqwest::Error) -> String {
    let mut msg = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut inner = None;
    while let Some(s) = src {
        inner = Some(s.to_string());
        src = s.source();
    }
    if let Some(i) = inner {
        msg.push_str(": ");
        msg.push_str(&i);
    }
    scrub(&msg)
}

/// `text` with caps redacted and every URL's password hidden.
pub fn scrub(text: &str) -> String {
    let text = steward_cap::redact_caps(text);
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(i) = rest.find("://") {
        // The URL starts at the scheme before "://".
        let start = rest[..i]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |p| p + 1);
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ')' | '>' | ','))
            .unwrap_or(tail.len());
        out.push_str(&redact_url(&tail[..end]));
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn scrub_hides_passwords_and_caps() {
        let t = super::scrub("error sending request for url (http://u:secret@127.0.0.1:1/uri/URI:DIR2:abcdefghijklmnop:qrstuvwxyzabcdef)");
        assert!(!t.contains("secret"), "{t}");
        assert!(!t.contains("abcdefghijklmnop"), "{t}");
        assert!(t.contains("http://u:***@127.0.0.1:1/"), "{t}");
    }
}
