//! Reading and editing the files `tahoe create-*` writes: keys of
//! `tahoe.cfg` (an INI file as Python's configparser reads it), the ports
//! in its Twisted endpoints and in a FURL, and replacing a file atomically.

use anyhow::{Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// Writes `text` to `path` through a `.tmp` file and a rename.
pub(crate) fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

/// Value of `key` in `[section]` of an INI text as Python's configparser
/// reads the simple files `tahoe create-*` writes (`key = value`, `#`
/// comments).
pub(crate) fn cfg_get(text: &str, section: &str, key: &str) -> Option<String> {
    cfg_find(text, section, key).map(|(_, v)| v.to_string())
}

/// `text` with `key` in `[section]` set to `value`; `None` if it has no
/// such key.
pub(crate) fn cfg_set(text: &str, section: &str, key: &str, value: &str) -> Option<String> {
    let (line_no, _) = cfg_find(text, section, key)?;
    let mut out = String::with_capacity(text.len() + value.len());
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if i == line_no {
            out.push_str(&format!("{key} = {value}\n"));
        } else {
            out.push_str(line);
        }
    }
    Some(out)
}

fn cfg_find<'a>(text: &'a str, section: &str, key: &str) -> Option<(usize, &'a str)> {
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

/// The port of a Twisted endpoint as `tahoe create-*` writes it
/// (`tcp:PORT:interface=127.0.0.1`), or of a bare `PORT` / `tcp:PORT`.
pub(crate) fn parse_port(endpoint: &str) -> Option<u16> {
    let mut parts = endpoint.trim().split(':');
    let first = parts.next()?;
    let port = if first.eq_ignore_ascii_case("tcp") {
        parts.next()?
    } else {
        first
    };
    port.parse::<u16>().ok().filter(|&p| p != 0)
}

/// The port of a FURL's first `tcp:127.0.0.1:PORT` location hint.
pub(crate) fn furl_port(furl: &str) -> Option<u16> {
    let hints = furl.split('@').nth(1)?.split('/').next()?;
    let first = hints.split(',').next()?;
    let rest = first.strip_prefix("tcp:").unwrap_or(first);
    let (host, port) = rest.rsplit_once(':')?;
    if host != "127.0.0.1" && host != "localhost" {
        return None;
    }
    port.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = "# comment\n[node]\nnickname = s0\nweb.port = \n\
        tub.port = tcp:4567:interface=127.0.0.1\ntub.location = tcp:127.0.0.1:4567\n\
        \n[client]\n#tub.port = 1\nshares.needed = 2\n";

    #[test]
    fn ini_get_and_set() {
        assert_eq!(
            cfg_get(CFG, "node", "tub.port").as_deref(),
            Some("tcp:4567:interface=127.0.0.1")
        );
        assert_eq!(cfg_get(CFG, "node", "web.port").as_deref(), Some(""));
        assert_eq!(cfg_get(CFG, "client", "tub.port"), None);
        assert_eq!(
            cfg_get(CFG, "client", "shares.needed").as_deref(),
            Some("2")
        );
        let new = cfg_set(CFG, "node", "tub.location", "tcp:localhost:9").unwrap();
        assert_eq!(
            new,
            CFG.replace("tcp:127.0.0.1:4567\n", "tcp:localhost:9\n")
        );
        assert_eq!(cfg_set(CFG, "client", "tub.location", "x"), None);
    }

    #[test]
    fn ports() {
        assert_eq!(parse_port("tcp:4567:interface=127.0.0.1"), Some(4567));
        assert_eq!(parse_port("tcp:4567"), Some(4567));
        assert_eq!(parse_port("4567"), Some(4567));
        assert_eq!(parse_port("disabled"), None);
        assert_eq!(parse_port("tcp:0"), None);
        assert_eq!(parse_port(""), None);
        assert_eq!(furl_port("pb://abc@tcp:127.0.0.1:4000/swiss"), Some(4000));
        assert_eq!(furl_port("pb://abc@tcp:example.org:4000/swiss"), None);
    }
}
