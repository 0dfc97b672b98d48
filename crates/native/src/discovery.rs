//! Finding the storage servers without Foolscap: from a node directory's
//! introducer cache, or from a plain servers file.

use crate::nurl::{furl_tub_id, Nurl};
use std::path::Path;

/// One storage server to talk to.
#[derive(Clone, Debug)]
pub struct ServerInfo {
    /// The id Tahoe writes in check results (`servers-responding`,
    /// `sharemap`): the announcement's `key_s` (`v0-<base32 ed25519 key>`).
    /// For a bare NURL from a servers file, where that key cannot be known,
    /// `spki-<SPKI hash of the NURL>` (see [`ServerInfo::from_servers_line`]).
    pub id: String,
    /// The announced nickname, if known (for messages only).
    pub nickname: Option<String>,
    /// Where and how to reach it.
    pub nurl: Nurl,
    /// Tahoe's lease seed for this server: the Foolscap tub id from
    /// `anonymous-storage-FURL`. `None` for a bare NURL: the seed is then
    /// learnt from the server's certificate at the first TLS handshake (the
    /// tub id is the SHA-1 of the certificate, which Tahoe's HTTPS storage
    /// server shares with its Foolscap tub).
    pub lease_seed: Option<[u8; 20]>,
}

impl ServerInfo {
    /// A short name for messages: `v0-abcdefgh… (nick) at host:port`.
    pub fn describe(&self) -> String {
        let short: String = self.id.chars().take(11).collect();
        match &self.nickname {
            Some(n) => format!("{short}… ({n}) at {}", self.nurl.authority()),
            None => format!("{short}… at {}", self.nurl.authority()),
        }
    }

    /// Parse one line of a servers file: `[<server id>] <NURL>`. Empty lines
    /// and lines starting with `#` give `Ok(None)`.
    ///
    /// Without a server id the id is `spki-<SPKI hash>`: Tahoe's `v0-` id is
    /// the server's ed25519 announcement key, which nothing reachable from a
    /// NURL reveals. Put the `key_s` from an announcement (or the storage
    /// node's `node.pubkey`, minus its `pub-` prefix) before the NURL to get
    /// results that name servers exactly as Tahoe does.
    pub fn from_servers_line(line: &str) -> Result<Option<ServerInfo>, String> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return Ok(None);
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let (id, nurl) = match words.as_slice() {
            [nurl] => (None, *nurl),
            [id, nurl] => (Some(id.trim_start_matches("pub-")), *nurl),
            _ => return Err("expected `[<server id>] <NURL>`".into()),
        };
        let nurl = Nurl::parse(nurl)?;
        let id = match id {
            Some(id) => {
                if !id.starts_with("v0-") {
                    return Err(format!(
                        "server id {id:?} does not start with v0- (Tahoe's form, e.g. an announcement's key_s)"
                    ));
                }
                id.to_string()
            }
            None => format!("spki-{}", nurl.spki_hash_text()),
        };
        Ok(Some(ServerInfo {
            id,
            nickname: None,
            nurl,
            lease_seed: None,
        }))
    }
}

/// Read a servers file (see [`ServerInfo::from_servers_line`]).
pub fn read_servers_file(path: &Path) -> Result<Vec<ServerInfo>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::IsADirectory => format!(
            "servers file {} is a directory: give the file (one server per line)",
            path.display()
        ),
        _ => format!("cannot read servers file {}: {e}", path.display()),
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        match ServerInfo::from_servers_line(line) {
            Ok(Some(s)) => out.push(s),
            Ok(None) => {}
            Err(e) => return Err(format!("{}:{}: {e}", path.display(), i + 1)),
        }
    }
    Ok(out)
}

/// What the introducer cache gave: usable servers, and servers skipped
/// (with why) because they announce no usable NURL.
#[derive(Debug, Default)]
pub struct Discovered {
    pub servers: Vec<ServerInfo>,
    pub skipped: Vec<String>,
}

/// Parse the text of `private/introducer_default_cache.yaml`: a list of
/// `{key_s: "v0-…", ann: {anonymous-storage-NURLs: [...],
/// anonymous-storage-FURL: "pb://…", nickname, permutation-seed-base32, …}}`.
/// Only storage announcements are used; the first `pb://…#v=1` NURL of each
/// is taken (as Tahoe, which races them, would normally end up with the
/// first reachable one). A later announcement with the same `key_s`
/// replaces an earlier one, as in Tahoe's storage broker.
pub fn parse_introducer_cache(text: &str) -> Result<Discovered, String> {
    use serde_norway::Value;
    let v: Value =
        serde_norway::from_str(text).map_err(|e| format!("introducer cache is not YAML: {e}"))?;
    let list = match v {
        Value::Sequence(s) => s,
        Value::Null => Vec::new(),
        _ => return Err("introducer cache is not a YAML list".into()),
    };
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let mut out = Discovered::default();
    for entry in &list {
        let Some(key_s) = s(entry, "key_s") else {
            out.skipped.push("an announcement without key_s".into());
            continue;
        };
        let Some(ann) = entry.get("ann") else {
            out.skipped.push(format!("{key_s}: no ann"));
            continue;
        };
        if let Some(service) = s(ann, "service-name") {
            if service != "storage" {
                continue;
            }
        }
        let nickname = s(ann, "nickname");
        let nurls: Vec<String> = ann
            .get("anonymous-storage-NURLs")
            .and_then(Value::as_sequence)
            .map(|l| {
                l.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let mut nurl = None;
        let mut why = "announces no anonymous-storage-NURLs (Foolscap only)".to_string();
        for n in &nurls {
            match Nurl::parse(n) {
                Ok(p) => {
                    nurl = Some(p);
                    break;
                }
                Err(e) => why = e,
            }
        }
        let Some(nurl) = nurl else {
            out.skipped.push(format!(
                "{key_s} ({}): {why}",
                nickname.as_deref().unwrap_or("?")
            ));
            continue;
        };
        let lease_seed = s(ann, "anonymous-storage-FURL").and_then(|f| furl_tub_id(&f).ok());
        let info = ServerInfo {
            id: key_s.clone(),
            nickname,
            nurl,
            lease_seed,
        };
        if let Some(old) = out.servers.iter_mut().find(|o| o.id == key_s) {
            *old = info;
        } else {
            out.servers.push(info);
        }
    }
    Ok(out)
}

/// Read Tahoe's lease secret from a node directory: `private/secret` holds
/// it as base32 text (`allmydata.client`, `base32.a2b`).
pub fn read_lease_secret(node_dir: &Path) -> Result<Vec<u8>, String> {
    let path = node_dir.join("private").join("secret");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read the lease secret {}: {e}", path.display()))?;
    steward_cap::base32::decode(text.trim())
        .map_err(|e| format!("{} is not base32: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CACHE: &str = r#"- ann:
    anonymous-storage-FURL: pb://5s2n4diiohteqlcls2xbk657q25vphwy@tcp:127.0.0.1:32801/y7jujbmgbgtfyt6xyvmyrsgja725zk3x
    anonymous-storage-NURLs:
    - pb://Lc7Prfjy_eXJTLX1U--NjbbiI8WJiDdPfzDVkbP0CWg@127.0.0.1:32801/y7jujbmgbgtfyt6xyvmyrsgja725zk3x#v=1
    app-versions: []
    my-version: tahoe-lafs/1.20.0
    nickname: s3
    nonce: v6xd3limtjwhaztrvdpjvmy7sufsconh5zgeb734orgqbgjfy6bq
    oldest-supported: 1.0.0
    permutation-seed-base32: mvrxc6tlgjvww2dpnbrxgz3goj5gez3dnrsxq6tsgvzhc2tzozwdgmtgmm2wo3dbgnywo2lgo5uxu2lenjqq
    seqnum: 1
    service-name: storage
    version: 0
  key_s: v0-ecqzk2kkhohcsgfrzbgclexzr5rqjyvl32fc5gla3qgifwizidja
- ann:
    anonymous-storage-FURL: pb://jilbpgbqcfphpqqs5subd6vq2hfjny3c@tcp:127.0.0.1:37463/rzyd7v4ey2hk4bs3hhvyh3667oxf56zt
    nickname: old
    service-name: storage
  key_s: v0-jqq37tn2xj2flh7ka5utgfbdlqfwtjbqnb77t2ymyum5p47czc4a
"#;

    #[test]
    fn parses_the_introducer_cache() {
        let d = parse_introducer_cache(CACHE).unwrap();
        assert_eq!(d.servers.len(), 1);
        let s = &d.servers[0];
        assert_eq!(
            s.id,
            "v0-ecqzk2kkhohcsgfrzbgclexzr5rqjyvl32fc5gla3qgifwizidja"
        );
        assert_eq!(s.nickname.as_deref(), Some("s3"));
        assert_eq!(s.nurl.port, 32801);
        assert_eq!(
            steward_cap::base32::encode(&s.lease_seed.unwrap()),
            "5s2n4diiohteqlcls2xbk657q25vphwy"
        );
        assert_eq!(d.skipped.len(), 1);
        assert!(d.skipped[0].contains("Foolscap only"), "{:?}", d.skipped);
        assert!(parse_introducer_cache("").unwrap().servers.is_empty());
        assert!(parse_introducer_cache("a: b").is_err());
    }

    #[test]
    fn servers_file_lines() {
        let n = "pb://Lc7Prfjy_eXJTLX1U--NjbbiI8WJiDdPfzDVkbP0CWg@127.0.0.1:32801/sw#v=1";
        let s = ServerInfo::from_servers_line(n).unwrap().unwrap();
        assert_eq!(s.id, "spki-Lc7Prfjy_eXJTLX1U--NjbbiI8WJiDdPfzDVkbP0CWg");
        assert!(s.lease_seed.is_none());
        let s = ServerInfo::from_servers_line(&format!("  v0-abc {n} "))
            .unwrap()
            .unwrap();
        assert_eq!(s.id, "v0-abc");
        let s = ServerInfo::from_servers_line(&format!("pub-v0-abc {n}"))
            .unwrap()
            .unwrap();
        assert_eq!(s.id, "v0-abc");
        assert!(ServerInfo::from_servers_line("# c").unwrap().is_none());
        assert!(ServerInfo::from_servers_line("   ").unwrap().is_none());
        assert!(ServerInfo::from_servers_line(&format!("x {n}")).is_err());
        assert!(ServerInfo::from_servers_line(&format!("a b {n}")).is_err());
    }
}
