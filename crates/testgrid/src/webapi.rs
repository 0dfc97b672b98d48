//! The client side of a grid: small web-API helpers on gateway 0 to build
//! trees and look at objects ([`Grid::mkdir`], [`Grid::upload`],
//! [`Grid::link`], [`Grid::check`], ...), the welcome page's server
//! status, and the stock `tahoe` CLI with its aliases.

use crate::Grid;
use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::process::Command;
use std::time::Duration;

impl Grid {
    /// nickname -> connection_status summary, from `GET /?t=json`.
    pub(crate) fn server_status(&self, gateway_url: &str) -> Result<BTreeMap<String, String>> {
        let v: Value = self
            .client()
            .get(format!("{gateway_url}?t=json"))
            .timeout(Duration::from_secs(5))
            .send()?
            .error_for_status()?
            .json()?;
        let mut out = BTreeMap::new();
        for s in v["servers"].as_array().into_iter().flatten() {
            if let (Some(n), Some(c)) = (s["nickname"].as_str(), s["connection_status"].as_str()) {
                out.insert(n.to_string(), c.to_string());
            }
        }
        Ok(out)
    }

    /// `tahoe -d <gateway 0 dir>`, ready for more args.
    pub fn tahoe(&self) -> Command {
        let mut c = Command::new(&self.tahoe);
        c.arg("-d").arg(self.gateway_dir());
        c
    }

    /// Adds (or replaces) alias `name` for `cap` in `private/aliases` of
    /// every gateway, as `tahoe add-alias` writes it (`name: cap` lines).
    pub fn add_alias(&self, name: &str, cap: &str) -> Result<()> {
        if name.contains(':') || name.contains('\n') || cap.contains('\n') {
            bail!("bad alias {name:?}");
        }
        for g in &self.gateways {
            let path = g.dir.join("private").join("aliases");
            let old = fs::read_to_string(&path).unwrap_or_default();
            let mut text = String::new();
            for line in old.lines() {
                let t = line.trim();
                if !t.starts_with('#') && t.split(':').next().map(str::trim) == Some(name) {
                    continue;
                }
                text.push_str(line);
                text.push('\n');
            }
            text.push_str(&format!("{name}: {cap}\n"));
            fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }

    fn url(&self, path_and_query: &str) -> String {
        format!(
            "{}{}",
            self.gateway_url(),
            path_and_query.trim_start_matches('/')
        )
    }

    fn text_response(resp: reqwest::blocking::Response, what: &str) -> Result<String> {
        let status = resp.status();
        let body = resp.text()?;
        if !status.is_success() {
            bail!("{what}: HTTP {status}: {body}");
        }
        Ok(body.trim().to_string())
    }

    /// `POST /uri?t=mkdir`: a new empty mutable directory's write cap.
    pub fn mkdir(&self) -> Result<String> {
        let r = self.client().post(self.url("uri?t=mkdir")).send()?;
        Self::text_response(r, "mkdir")
    }

    /// `POST /uri?t=mkdir&format=FORMAT` (`SDMF` or `MDMF`): a new empty
    /// mutable directory of that format (`URI:DIR2:` or `URI:DIR2-MDMF:`).
    pub fn mkdir_format(&self, format: &str) -> Result<String> {
        let r = self
            .client()
            .post(self.url(&format!("uri?t=mkdir&format={format}")))
            .send()?;
        Self::text_response(r, "mkdir")
    }

    /// `POST /uri?t=mkdir-immutable` with `children` (see
    /// [`Grid::mkdir_with_children`] for the accepted forms). Every child
    /// must be immutable.
    pub fn mkdir_immutable(&self, children: Value) -> Result<String> {
        let body = serde_json::to_vec(&normalize_children(children)?)?;
        let r = self
            .client()
            .post(self.url("uri?t=mkdir-immutable"))
            .body(body)
            .send()?;
        Self::text_response(r, "mkdir-immutable")
    }

    /// `POST /uri?t=mkdir-with-children`: a new mutable directory holding
    /// `children`, an object `{name: [nodetype, {rw_uri?, ro_uri, metadata?}]}`
    /// as in webapi.rst; as a shorthand a value may be just a cap string
    /// (node type and rw/ro are then inferred from the cap's prefix).
    pub fn mkdir_with_children(&self, children: Value) -> Result<String> {
        let body = serde_json::to_vec(&normalize_children(children)?)?;
        let r = self
            .client()
            .post(self.url("uri?t=mkdir-with-children"))
            .body(body)
            .send()?;
        Self::text_response(r, "mkdir-with-children")
    }

    /// `PUT /uri?format=FORMAT` (`CHK`, `SDMF`, `MDMF`): the new file's cap.
    /// CHK data of 55 bytes or less gives a `URI:LIT:` cap.
    pub fn upload(&self, data: &[u8], format: &str) -> Result<String> {
        let r = self
            .client()
            .put(self.url(&format!("uri?format={format}")))
            .body(data.to_vec())
            .send()?;
        Self::text_response(r, "upload")
    }

    /// `PUT /uri/$DIRCAP/NAME?t=uri`: links `childcap` as `name` (any
    /// Unicode, percent-encoded here) in directory `dircap`.
    pub fn link(&self, dircap: &str, name: &str, childcap: &str) -> Result<()> {
        let r = self
            .client()
            .put(self.url(&format!("uri/{}/{}?t=uri", dircap, percent_encode(name))))
            .body(childcap.to_string())
            .send()?;
        Self::text_response(r, "link").map(|_| ())
    }

    /// `GET` gateway + `path_and_query` (leading `/` optional), as JSON.
    pub fn get_json(&self, path_and_query: &str) -> Result<Value> {
        let r = self.client().get(self.url(path_and_query)).send()?;
        let body = Self::text_response(r, &format!("GET {path_and_query}"))?;
        serde_json::from_str(&body)
            .with_context(|| format!("GET {path_and_query}: not JSON: {body}"))
    }

    /// `POST` gateway + `path_and_query` with an empty body: status and body.
    pub fn post(&self, path_and_query: &str) -> Result<(u16, String)> {
        let r = self.client().post(self.url(path_and_query)).send()?;
        let status = r.status().as_u16();
        Ok((status, r.text()?))
    }

    /// `POST /uri/$CAP?t=check&output=JSON` (plus `&verify=true` if asked):
    /// the parsed check results.
    pub fn check(&self, cap: &str, verify: bool) -> Result<Value> {
        let q = format!(
            "uri/{cap}?t=check&output=JSON{}",
            if verify { "&verify=true" } else { "" }
        );
        let (status, body) = self.post(&q)?;
        if !(200..300).contains(&status) {
            bail!("check {cap}: HTTP {status}: {body}");
        }
        Ok(serde_json::from_str(&body)?)
    }

    /// The base32 storage index of `cap` (from its verify cap, via
    /// `GET /uri/$CAP?t=json`). LIT caps have none: error.
    pub fn storage_index(&self, cap: &str) -> Result<String> {
        let v = self.get_json(&format!("uri/{cap}?t=json"))?;
        let vc = v[1]["verify_uri"]
            .as_str()
            .ok_or_else(|| anyhow!("{cap} has no verify cap (LIT?)"))?;
        vc.split(':')
            .nth(2)
            .map(str::to_string)
            .ok_or_else(|| anyhow!("odd verify cap {vc}"))
    }
}

/// `len` bytes that differ on every call (in this process and from other
/// processes), so that every upload is a new object.
pub fn unique_data(len: usize) -> Vec<u8> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    let seed = N.fetch_add(1, Ordering::Relaxed) ^ (u64::from(std::process::id()) << 32);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn is_write_cap(cap: &str) -> bool {
    ["URI:DIR2:", "URI:DIR2-MDMF:", "URI:SSK:", "URI:MDMF:"]
        .iter()
        .any(|p| cap.starts_with(p))
}

/// Expands `{name: "cap"}` shorthand into `{name: [type, {rw_uri|ro_uri}]}`.
fn normalize_children(children: Value) -> Result<Value> {
    let Value::Object(map) = children else {
        bail!("children must be a JSON object");
    };
    let mut out = serde_json::Map::new();
    for (name, v) in map {
        let v = match v {
            Value::String(cap) => {
                let kind = if cap.starts_with("URI:DIR2") {
                    "dirnode"
                } else {
                    "filenode"
                };
                let key = if is_write_cap(&cap) {
                    "rw_uri"
                } else {
                    "ro_uri"
                };
                serde_json::json!([kind, { key: cap }])
            }
            other => other,
        };
        out.insert(name, v);
    }
    Ok(Value::Object(out))
}
