//! `tahoe.cfg`, a node's configuration: an INI file as Python's
//! configparser reads the simple files `tahoe create-*` writes
//! (`[section]` headers, `key = value` or `key: value` lines, keys without
//! regard to case, `#` and `;` comment lines). One reader for steward (the
//! grid's happiness, a node's storage settings) and for the test grid
//! (which also rewrites values).

/// The value of `key` in `[section]`, trimmed; `None` where there is none.
pub fn get<'a>(text: &'a str, section: &str, key: &str) -> Option<&'a str> {
    find(text, section, key).map(|(_, v)| v)
}

/// `text` with `key` in `[section]` set to `value` (the rest byte for
/// byte); `None` if it has no such key.
pub fn set(text: &str, section: &str, key: &str, value: &str) -> Option<String> {
    let (line_no, _) = find(text, section, key)?;
    let mut out = String::with_capacity(text.len() + value.len());
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if i == line_no {
            out.push_str(key);
            out.push_str(" = ");
            out.push_str(value);
            out.push('\n');
        } else {
            out.push_str(line);
        }
    }
    Some(out)
}

/// The line number and value of `key` in `[section]`.
fn find<'a>(text: &'a str, section: &str, key: &str) -> Option<(usize, &'a str)> {
    let mut current = "";
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('#') || t.starts_with(';') || t.is_empty() {
            continue;
        }
        if let Some(name) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            current = name.trim();
            continue;
        }
        if current != section {
            continue;
        }
        let Some(at) = t.find(['=', ':']) else {
            continue;
        };
        if t[..at].trim().eq_ignore_ascii_case(key) {
            return Some((i, t[at + 1..].trim()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = "# comment\n[node]\nnickname = s0\nweb.port = \n\
        tub.port = tcp:4567:interface=127.0.0.1\ntub.location = tcp:127.0.0.1:4567\n\
        \n[client]\n#tub.port = 1\n; shares.needed = 9\nshares.needed = 2\nShares.Happy: 3\n";

    #[test]
    fn values_are_read_by_section() {
        assert_eq!(
            get(CFG, "node", "tub.port"),
            Some("tcp:4567:interface=127.0.0.1")
        );
        assert_eq!(get(CFG, "node", "web.port"), Some(""));
        assert_eq!(get(CFG, "client", "tub.port"), None);
        assert_eq!(get(CFG, "client", "shares.needed"), Some("2"));
        assert_eq!(get(CFG, "client", "shares.happy"), Some("3"));
        assert_eq!(get(CFG, "storage", "enabled"), None);
    }

    #[test]
    fn a_value_is_set_in_place() {
        let new = set(CFG, "node", "tub.location", "tcp:localhost:9").unwrap();
        assert_eq!(
            new,
            CFG.replace("tcp:127.0.0.1:4567\n", "tcp:localhost:9\n")
        );
        assert_eq!(set(CFG, "client", "tub.location", "x"), None);
    }
}
