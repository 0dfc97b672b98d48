//! Making request targets and URLs safe to log.
//!
//! Caps are secrets, and in Tahoe's web API they travel in the request
//! path (`/uri/URI%3ADIR2%3A.../docs`) and sometimes in the query
//! (`/uri?uri=URI:...`, `when_done=/uri/URI:...`). [`target`] rewrites a
//! path-and-query so that every path segment or query value that holds a
//! cap (escaped or not) keeps only what [`steward_cap::redact`] keeps
//! (`URI:DIR2:agxt…`); names of children stay readable. [`url`] drops the
//! password of a URL (`http://user:secret@host/` -> `http://user:***@host/`).

use percent_encoding::percent_decode_str;

/// Whether a (decoded) piece of a request holds a cap.
fn holds_cap(decoded: &str) -> bool {
    decoded.to_ascii_uppercase().contains("URI:")
}

/// Decode percent-escapes (twice at most, for a cap escaped twice inside a
/// query value); invalid UTF-8 is replaced.
fn decode(s: &str) -> String {
    let once = percent_decode_str(s).decode_utf8_lossy().into_owned();
    if once.contains('%') {
        percent_decode_str(&once).decode_utf8_lossy().into_owned()
    } else {
        once
    }
}

/// Redact one path segment or query value.
fn piece(raw: &str) -> String {
    let decoded = decode(&raw.replace('+', " "));
    if !holds_cap(&decoded) {
        return raw.to_string();
    }
    // A value may hold a cap after other text (`when_done=/uri/URI:...`):
    // keep what comes before the cap, redact the rest.
    let upper = decoded.to_ascii_uppercase();
    let at = upper.find("URI:").unwrap_or(0);
    let start = decoded[..at]
        .rfind(['/', ' '])
        .map(|i| i + 1)
        .unwrap_or(0)
        .min(at);
    let (before, cap) = decoded.split_at(start);
    let kept: String = before.chars().flat_map(char::escape_debug).collect();
    format!("{kept}{}", steward_cap::redact(cap))
}

/// A request's path and query with every cap redacted.
pub fn target(path_and_query: &str) -> String {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let mut out: String = path.split('/').map(piece).collect::<Vec<_>>().join("/");
    if let Some(q) = query {
        out.push('?');
        let pairs: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => format!("{}={}", piece(k), piece(v)),
                None => piece(kv),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    out
}

/// A URL without its password (and without a cap in its path).
pub fn url(u: &str) -> String {
    match url::Url::parse(u) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            let pq = match parsed.query() {
                Some(q) => format!("{}?{q}", parsed.path()),
                None => parsed.path().to_string(),
            };
            let base = {
                let mut b = parsed.clone();
                b.set_path("");
                b.set_query(None);
                b.to_string()
            };
            format!("{}{}", base.trim_end_matches('/'), target(&pq))
        }
        // Not a URL: say nothing of what it holds beyond its start.
        Err(_) => steward_cap::redact(u),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: &str =
        "URI:DIR2:agxty3ih2u2fyjauu3ajrznpri:ayozvbzvnv242axxynv4qrdtgmvjh2k3epqmjdskpgduru4sffda";

    #[test]
    fn caps_in_paths_and_queries_are_redacted() {
        let escaped = CAP.replace(':', "%3A");
        let t = target(&format!(
            "/uri/{escaped}/docs/a%20b?t=stream-deep-check&verify=true"
        ));
        assert_eq!(
            t,
            "/uri/URI:DIR2:agxt…/docs/a%20b?t=stream-deep-check&verify=true"
        );
        let t = target(&format!("/uri/{CAP}?t=json"));
        assert!(!t.contains("ayozvbzv"), "{t}");
        let t = target(&format!("/uri?uri={escaped}&when_done=%2Furi%2F{escaped}"));
        assert!(
            !t.contains("agxty3ih2u2f") && !t.contains("ayozvbzv"),
            "{t}"
        );
        assert!(t.contains("when_done=/uri/URI:DIR2:agxt…"), "{t}");
        // Lower-case and ro./imm. forms too.
        let t = target(&format!("/file/ro.{}", CAP.to_lowercase()));
        assert!(!t.contains("ayozvbzv"), "{t}");
        // Nothing to hide: unchanged.
        assert_eq!(target("/statistics?t=json"), "/statistics?t=json");
        assert_eq!(
            target("/operations/abc?output=JSON"),
            "/operations/abc?output=JSON"
        );
    }

    #[test]
    fn url_passwords_are_hidden() {
        assert_eq!(
            url("http://alice:s3cret@127.0.0.1:3456/"),
            "http://alice:***@127.0.0.1:3456/"
        );
        assert_eq!(url("http://127.0.0.1:3456/"), "http://127.0.0.1:3456/");
        let u = url(&format!("http://127.0.0.1:3456/uri/{CAP}"));
        assert!(!u.contains("ayozvbzv"), "{u}");
    }
}
