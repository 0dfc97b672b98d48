//! Reading the files `tahoe create-*` writes: the ports in its Twisted
//! endpoints and in a FURL, and replacing a file atomically (keys of
//! `tahoe.cfg` are read and set by `steward_format::tahoe_cfg`).

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
