//! NURLs (`pb://<SPKI hash>@<host>:<port>/<swissnum>#v=1`) and the tub id
//! part of Foolscap FURLs.

use data_encoding::BASE64URL_NOPAD;
use std::fmt;

/// A parsed storage NURL (the "Great Black Swamp" HTTPS storage protocol,
/// `v=1`).
#[derive(Clone, PartialEq, Eq)]
pub struct Nurl {
    /// SHA-256 of the server certificate's SubjectPublicKeyInfo (DER).
    pub spki_hash: [u8; 32],
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// The swissnum (ASCII), sent base64-encoded in `Authorization`.
    pub swissnum: String,
}

impl fmt::Debug for Nurl {
    // The swissnum is a secret: never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Nurl(pb://{}@{}/…#v=1)",
            BASE64URL_NOPAD.encode(&self.spki_hash),
            self.authority()
        )
    }
}

impl Nurl {
    /// Parse `pb://<hash>@<host>:<port>/<swissnum>#v=1`. Only the `pb`
    /// scheme over TCP and version 1 are supported (`pb+tor` is not).
    pub fn parse(s: &str) -> Result<Nurl, String> {
        let s = s.trim();
        let rest = s.strip_prefix("pb://").ok_or_else(|| {
            if s.starts_with("pb+tor://") {
                "Tor NURLs (pb+tor://) are not supported".to_string()
            } else {
                "a NURL starts with pb://".to_string()
            }
        })?;
        let (rest, fragment) = match rest.split_once('#') {
            Some((r, f)) => (r, Some(f)),
            None => (rest, None),
        };
        if fragment != Some("v=1") {
            return Err(format!(
                "unsupported NURL version {:?} (only #v=1 is known)",
                fragment.unwrap_or("")
            ));
        }
        let (hash, rest) = rest
            .split_once('@')
            .ok_or("a NURL has <SPKI hash>@ after pb://")?;
        let raw = BASE64URL_NOPAD
            .decode(hash.as_bytes())
            .map_err(|_| "the SPKI hash of a NURL is not unpadded URL-safe base64".to_string())?;
        let spki_hash: [u8; 32] = raw
            .try_into()
            .map_err(|v: Vec<u8>| format!("the SPKI hash is {} bytes, not 32", v.len()))?;
        let (hostport, path) = rest
            .split_once('/')
            .ok_or("a NURL has /<swissnum> after the host")?;
        let swissnum = path.trim_end_matches('/').to_string();
        if swissnum.is_empty() || swissnum.contains('/') || !swissnum.is_ascii() {
            return Err("the swissnum of a NURL must be one non-empty ASCII path segment".into());
        }
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            let (h, p) = h
                .split_once("]:")
                .ok_or("a NURL's [IPv6] host must be followed by :port")?;
            (h, p)
        } else {
            hostport
                .rsplit_once(':')
                .ok_or("a NURL's host must be followed by :port")?
        };
        if host.is_empty() {
            return Err("a NURL has an empty host".into());
        }
        let port: u16 = port
            .parse()
            .map_err(|_| format!("bad port {port:?} in NURL"))?;
        Ok(Nurl {
            spki_hash,
            host: host.to_string(),
            port,
            swissnum,
        })
    }

    /// `host:port`, with brackets around an IPv6 address.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// `https://host:port`.
    pub fn base_url(&self) -> String {
        format!("https://{}", self.authority())
    }

    /// The SPKI hash as written in the NURL.
    pub fn spki_hash_text(&self) -> String {
        BASE64URL_NOPAD.encode(&self.spki_hash)
    }
}

/// The Foolscap tub id of a FURL (`pb://<base32 tub id>@<hints>/<name>`),
/// decoded: Tahoe's `lease_seed` for that server (20 bytes).
pub fn furl_tub_id(furl: &str) -> Result<[u8; 20], String> {
    let rest = furl
        .trim()
        .strip_prefix("pb://")
        .ok_or("a FURL starts with pb://")?;
    let (tubid, _) = rest.split_once('@').ok_or("a FURL has <tub id>@")?;
    let raw = steward_cap::base32::decode(&tubid.to_ascii_lowercase())
        .map_err(|e| format!("the tub id of a FURL is not base32: {e}"))?;
    raw.try_into()
        .map_err(|v: Vec<u8>| format!("the tub id is {} bytes, not 20", v.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: &str = "pb://Lc7Prfjy_eXJTLX1U--NjbbiI8WJiDdPfzDVkbP0CWg@127.0.0.1:32801/y7jujbmgbgtfyt6xyvmyrsgja725zk3x#v=1";

    #[test]
    fn parses_a_real_nurl() {
        let n = Nurl::parse(N).unwrap();
        assert_eq!(n.host, "127.0.0.1");
        assert_eq!(n.port, 32801);
        assert_eq!(n.swissnum, "y7jujbmgbgtfyt6xyvmyrsgja725zk3x");
        assert_eq!(
            n.spki_hash_text(),
            "Lc7Prfjy_eXJTLX1U--NjbbiI8WJiDdPfzDVkbP0CWg"
        );
        assert_eq!(n.base_url(), "https://127.0.0.1:32801");
        assert!(
            !format!("{n:?}").contains("y7ju"),
            "Debug hides the swissnum"
        );
    }

    #[test]
    fn ipv6_and_errors() {
        let n = Nurl::parse("pb://Lc7Prfjy_eXJTLX1U--NjbbiI8WJiDdPfzDVkbP0CWg@[::1]:80/abc#v=1")
            .unwrap();
        assert_eq!(n.host, "::1");
        assert_eq!(n.authority(), "[::1]:80");
        assert!(Nurl::parse(&N.replace("#v=1", "")).is_err());
        assert!(Nurl::parse(&N.replace("pb://", "pb+tor://")).is_err());
        assert!(Nurl::parse(&N.replace("Lc7P", "Lc7")).is_err());
        assert!(Nurl::parse(&N.replace(":32801", "")).is_err());
        assert!(Nurl::parse("http://x").is_err());
    }

    #[test]
    fn furl_tub_id_decodes_base32() {
        let id = furl_tub_id(
            "pb://5s2n4diiohteqlcls2xbk657q25vphwy@tcp:127.0.0.1:32801/y7jujbmgbgtfyt6xyvmyrsgja725zk3x",
        )
        .unwrap();
        assert_eq!(
            steward_cap::base32::encode(&id),
            "5s2n4diiohteqlcls2xbk657q25vphwy"
        );
        assert!(furl_tub_id("pb://abc@x/y").is_err());
    }
}
