//! The accounts file of `steward dispatch` (ACCOUNTS.toml): what to keep
//! healthy, and how.
//!
//! ```toml
//! # Defaults for every account (each may be overridden per account).
//! gateway = ["http://127.0.0.1:3456/", "http://127.0.0.1:3457/"]
//! verify = false        # download and verify every share
//! add_lease = true      # renew leases
//! repair = true         # repair what is not healthy (default true)
//! repair_below = 4      # only objects with fewer good shares than this
//! weight = 1            # share of the request budget
//!
//! [[account]]
//! name = "alice"
//! root = "URI:DIR2:..."            # a cap, or alias:path with node_directory
//!
//! [[account]]
//! name = "bob"
//! root = "tahoe:"
//! node_directory = "/srv/tahoe/bob"
//! backend = "native"               # checks straight to the storage servers
//! weight = 3
//! ```
//!
//! Keys: `name` (required; letters, digits, `-`, `_`, `.`: it names the
//! account's files), `root` (required), `gateway` (a URL or a list), `backend`
//! (`gateway` or `native`), `node_directory`, `servers` (a servers file for
//! the native backend), `lease_secret` (a lease secret file), `verify`,
//! `add_lease`, `repair`, `repair_below`, `happy`, `weight`. Every top-level
//! key but `account` is a default for all accounts.
//!
//! A file that does not parse, a key this steward does not know, a value of
//! the wrong type, two accounts with one name: the whole file is refused
//! before any work, with the line, the key and the reason (never quoting a
//! value: roots are caps). What can only be known by trying (a root cap that
//! does not parse, an unknown alias, a gateway that does not answer) fails
//! that account alone, at run time.

use crate::error::{Error, Result};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// One or several gateway URLs.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Urls {
    One(String),
    Many(Vec<String>),
}

impl Urls {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Urls::One(u) => vec![u.clone()],
            Urls::Many(v) => v.clone(),
        }
    }
}

/// Which backend checks.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Gateway,
    Native,
}

/// Declares a struct with the settings an account may give, each optional
/// (defaults fill them), plus `$extra` fields. Written out (not
/// `#[serde(flatten)]`) so that an unknown key is reported at its own line.
macro_rules! with_settings {
    ($(#[$m:meta])* struct $name:ident { $($extra:tt)* }) => {
        $(#[$m])*
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct $name {
            $($extra)*
            gateway: Option<Urls>,
            backend: Option<BackendKind>,
            node_directory: Option<PathBuf>,
            servers: Option<PathBuf>,
            lease_secret: Option<PathBuf>,
            verify: Option<bool>,
            add_lease: Option<bool>,
            repair: Option<bool>,
            repair_below: Option<u64>,
            happy: Option<u64>,
            weight: Option<u32>,
        }
    };
}

with_settings! {
    /// One `[[account]]` table as written.
    struct RawAccount {
        name: String,
        root: String,
    }
}

with_settings! {
    /// The file as written: defaults at the top, then the accounts.
    struct RawFile {
        #[serde(default)]
        account: Vec<RawAccount>,
    }
}

/// One account, with the defaults applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Account {
    pub name: String,
    /// A cap (optionally `/sub/path`) or `alias:path`: parsed when the
    /// account runs, so that a bad one fails that account only.
    pub root: String,
    pub gateway: Vec<String>,
    pub backend: BackendKind,
    pub node_directory: Option<PathBuf>,
    pub servers: Option<PathBuf>,
    pub lease_secret: Option<PathBuf>,
    pub verify: bool,
    pub add_lease: bool,
    pub repair: bool,
    pub repair_below: Option<u64>,
    pub happy: Option<u64>,
    pub weight: u32,
}

/// Read and validate an accounts file.
pub fn load(path: &Path) -> Result<Vec<Account>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::io(
            format!("cannot read the accounts file {}", path.display()),
            e,
        )
    })?;
    parse(&text, &path.display().to_string())
}

/// Parse an accounts file's text; `name` is how messages name it.
pub fn parse(text: &str, name: &str) -> Result<Vec<Account>> {
    let raw: RawFile = toml::from_str(text).map_err(|e| toml_error(&e, text, name))?;
    let d = &raw;
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(raw.account.len());
    if raw.account.is_empty() {
        return Err(Error::config(format!(
            "{name}: no [[account]] tables: nothing to do (see `steward dispatch --help` for the format)"
        )));
    }
    for (i, a) in raw.account.iter().enumerate() {
        let line = account_line(text, i);
        let bad =
            |key: &str, why: &str| Error::config(format!("{name} line {line}, key `{key}`: {why}"));
        if a.name.is_empty()
            || !a
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            || a.name.starts_with('.')
        {
            return Err(bad(
                "name",
                "an account name is letters, digits, '-', '_' and '.' (not first): it names the account's files",
            ));
        }
        if !seen.insert(a.name.clone()) {
            return Err(bad("name", "two accounts have this name"));
        }
        if a.root.trim().is_empty() {
            return Err(bad("root", "empty: give a directory cap or alias:path"));
        }
        let s = a;
        let weight = s.weight.or(d.weight).unwrap_or(1);
        if weight == 0 {
            return Err(bad("weight", "must be at least 1"));
        }
        let repair_below = s.repair_below.or(d.repair_below);
        if repair_below == Some(0) {
            return Err(bad(
                "repair_below",
                "must be at least 1 (an object has at least one share to count)",
            ));
        }
        let backend = s.backend.or(d.backend).unwrap_or(BackendKind::Gateway);
        let gateway = pick(&s.gateway, &d.gateway)
            .map(|u| u.to_vec())
            .unwrap_or_default();
        let node_directory = pick(&s.node_directory, &d.node_directory);
        if backend == BackendKind::Gateway && gateway.is_empty() && node_directory.is_none() {
            return Err(bad(
                "gateway",
                "no gateway for this account: give `gateway` (here or at the top), or `node_directory` with a node.url",
            ));
        }
        let servers = pick(&s.servers, &d.servers);
        if backend == BackendKind::Native && servers.is_none() && node_directory.is_none() {
            return Err(bad(
                "backend",
                "the native backend needs `node_directory` or a `servers` file to find the storage servers",
            ));
        }
        out.push(Account {
            name: a.name.clone(),
            root: a.root.trim().to_string(),
            gateway,
            backend,
            node_directory,
            servers,
            lease_secret: pick(&s.lease_secret, &d.lease_secret),
            verify: s.verify.or(d.verify).unwrap_or(false),
            add_lease: s.add_lease.or(d.add_lease).unwrap_or(false),
            repair: s.repair.or(d.repair).unwrap_or(true),
            repair_below,
            happy: s.happy.or(d.happy),
            weight,
        });
    }
    Ok(out)
}

/// The account's own value, else the default.
fn pick<T: Clone>(own: &Option<T>, default: &Option<T>) -> Option<T> {
    own.clone().or_else(|| default.clone())
}

/// The line of the `i`th `[[account]]` header.
fn account_line(text: &str, i: usize) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with("[[account]]"))
        .nth(i)
        .map_or(0, |(n, _)| n + 1)
}

/// One line: where, which key, why — without quoting any value.
fn toml_error(e: &toml::de::Error, text: &str, name: &str) -> Error {
    let line = e
        .span()
        .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
    // The key: the word before '=' on that line, if the error points at one.
    let key = line.and_then(|l| {
        let t = text.lines().nth(l - 1)?;
        let (k, _) = t.split_once('=')?;
        let k = k.trim().trim_matches('"');
        (!k.is_empty() && !k.starts_with('[')).then(|| k.to_string())
    });
    let mut reason = e.message().replace('\n', " ");
    // serde quotes values ("invalid type: string \"URI:...\""): keep only
    // the kind of value.
    if let Some(i) = reason.find(": string \"") {
        if let Some(end) = reason[i + 10..].find('"') {
            reason.replace_range(i + 2..i + 10 + end + 1, "a string");
        }
    }
    let reason = steward_cap::redact_caps(&reason);
    Error::config(format!(
        "{name}{}{}: {reason}",
        line.map(|l| format!(" line {l}")).unwrap_or_default(),
        key.map(|k| format!(", key `{k}`")).unwrap_or_default()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
gateway = "http://127.0.0.1:3456/"
add_lease = true

[[account]]
name = "alice"
root = "URI:DIR2:aaaaaaaaaaaaaaaaaaaaaaaaaa:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

[[account]]
name = "bob"
root = "tahoe:docs"
node_directory = "/srv/bob"
gateway = ["http://a/", "http://b/"]
backend = "native"
weight = 3
repair = false
"#;

    #[test]
    fn defaults_apply_and_accounts_override() {
        let a = parse(GOOD, "A.toml").unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].gateway, vec!["http://127.0.0.1:3456/"]);
        assert!(a[0].add_lease && a[0].repair && !a[0].verify);
        assert_eq!(a[0].weight, 1);
        assert_eq!(a[1].gateway, vec!["http://a/", "http://b/"]);
        assert_eq!(a[1].backend, BackendKind::Native);
        assert_eq!(a[1].weight, 3);
        assert!(!a[1].repair && a[1].add_lease);
    }

    fn err(text: &str) -> String {
        parse(text, "A.toml").unwrap_err().message
    }

    #[test]
    fn bad_files_name_the_line_the_key_and_the_reason() {
        let e = err(
            "gateway = \"http://x/\"\n[[account]]\nname = \"a\"\nroot = \"r\"\ncolour = \"blue\"\n",
        );
        assert!(e.contains("A.toml line 5") && e.contains("colour"), "{e}");
        let e = err("gateway = \"http://x/\"\n[[account]]\nname = \"a\"\nroot = \"r\"\nweight = \"URI:DIR2:secretsecretsecretsecret:x\"\n");
        assert!(e.contains("line 5") && e.contains("`weight`"), "{e}");
        assert!(!e.contains("secretsecret"), "never quotes a value: {e}");
        let e =
            err("gateway = \"http://x/\"\n[[account]]\nname = \"a\"\nroot = \"r\"\nweight = 0\n");
        assert!(e.contains("line 2") && e.contains("`weight`"), "{e}");
        let e = err("gateway = \"http://x/\"\n[[account]]\nname = \"a\"\nroot = \"r\"\n[[account]]\nname = \"a\"\nroot = \"s\"\n");
        assert!(e.contains("line 5") && e.contains("two accounts"), "{e}");
        let e = err("[[account]]\nname = \"a\"\nroot = \"r\"\n");
        assert!(e.contains("no gateway"), "{e}");
        let e = err("[[account]]\nname = \"../etc\"\nroot = \"r\"\ngateway = \"http://x/\"\n");
        assert!(e.contains("`name`"), "{e}");
        let e = err("gateway = \"http://x/\"\n");
        assert!(e.contains("no [[account]]"), "{e}");
        let e = err("[[account]\nname=");
        assert!(e.contains("A.toml line 1"), "{e}");
        let e = err("[[account]]\nname = \"a\"\ngateway = \"http://x/\"\n");
        assert!(e.contains("root"), "{e}");
    }
}
