//! Where the grid is and what the root is: gateway URLs, the Tahoe node
//! directory, aliases.
//!
//! The gateway comes, as for the `tahoe` CLI, from `--gateway URL` (repeated
//! or comma-separated for several gateways of one grid), else the
//! `STEWARD_GATEWAY` environment variable, else `node.url` in the node
//! directory (`--node-directory`, default `~/.tahoe`). A root is a cap
//! (`URI:DIR2:...`, optionally followed by `/sub/path`) or an alias
//! (`tahoe:` or `tahoe:some/dir`) from the node directory's `private/aliases`
//! (and `private/root_dir.cap` for the `tahoe` alias), resolved by listing
//! each directory on the way.

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use steward_backend::{Backend, NodeType};
use steward_cap::Cap;

/// The node directory given, or `~/.tahoe`.
pub fn node_directory(given: Option<&Path>) -> PathBuf {
    if let Some(p) = given {
        return p.to_path_buf();
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".tahoe")
}

/// The gateway URLs to use, in the documented order of precedence.
pub fn gateway_urls(flags: &[String], node_dir: &Path) -> Result<Vec<String>> {
    let split = |s: &str| -> Vec<String> {
        s.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    let from_flags: Vec<String> = flags.iter().flat_map(|f| split(f)).collect();
    if !from_flags.is_empty() {
        return Ok(from_flags);
    }
    if let Ok(env) = std::env::var("STEWARD_GATEWAY") {
        let v = split(&env);
        if !v.is_empty() {
            return Ok(v);
        }
    }
    let node_url = node_dir.join("node.url");
    match std::fs::read_to_string(&node_url) {
        Ok(s) if !s.trim().is_empty() => Ok(vec![s.trim().to_string()]),
        _ => Err(Error::config(format!(
            "no gateway: {} does not exist; pass --gateway http://HOST:PORT/, set STEWARD_GATEWAY, or give --node-directory of a Tahoe node",
            node_url.display()
        ))),
    }
}

/// Read `private/aliases` (and `private/root_dir.cap`) as the `tahoe` CLI does.
pub fn aliases(node_dir: &Path) -> HashMap<String, String> {
    let mut out = HashMap::new();
    if let Ok(s) = std::fs::read_to_string(node_dir.join("private").join("root_dir.cap")) {
        if !s.trim().is_empty() {
            out.insert("tahoe".to_string(), s.trim().to_string());
        }
    }
    if let Ok(s) = std::fs::read_to_string(node_dir.join("private").join("aliases")) {
        for line in s.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some((name, cap)) = line.split_once(':') {
                out.insert(name.trim().to_string(), cap.trim().to_string());
            }
        }
    }
    out
}

/// A root as given on the command line, before any request.
#[derive(Debug)]
pub struct RootSpec {
    pub cap: Cap,
    /// Names to follow from `cap`.
    pub path: Vec<String>,
    /// How to name the root in messages (alias, or redacted cap).
    pub label: String,
}

/// Parse a root argument: a cap with an optional `/path`, or `alias:path`.
pub fn parse_root(arg: &str, node_dir: &Path) -> Result<RootSpec> {
    let arg = arg.trim();
    let split_path = |p: &str| -> Vec<String> {
        p.split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    if arg.starts_with("URI:") {
        let (cap_text, path) = match arg.find(":./") {
            Some(i) => (&arg[..i], &arg[i + 3..]),
            None => match arg.find('/') {
                Some(i) => (&arg[..i], &arg[i + 1..]),
                None => (arg, ""),
            },
        };
        let cap = Cap::parse(cap_text).map_err(|e| Error::input(format!("root: {e}")))?;
        let label = cap.redacted();
        return Ok(RootSpec {
            cap,
            path: split_path(path),
            label,
        });
    }
    let Some((alias, path)) = arg.split_once(':') else {
        return Err(Error::input(format!(
            "root {:?} is neither a cap (URI:...) nor an alias (tahoe: or tahoe:some/dir)",
            steward_cap::redact(arg)
        )));
    };
    let aliases = aliases(node_dir);
    let Some(cap_text) = aliases.get(alias) else {
        let mut known: Vec<&String> = aliases.keys().collect();
        known.sort();
        return Err(Error::input(format!(
            "unknown alias {alias:?}: {} has {}; create it with `tahoe create-alias {alias}` or give a cap",
            node_dir.join("private").join("aliases").display(),
            if known.is_empty() {
                "no aliases".to_string()
            } else {
                format!(
                    "only {}",
                    known
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        )));
    };
    let cap = Cap::parse(cap_text).map_err(|e| Error::input(format!("alias {alias:?}: {e}")))?;
    Ok(RootSpec {
        cap,
        path: split_path(path),
        label: format!("{alias}:{path}"),
    })
}

/// Follow a root's path to the cap it names, listing each directory on the way.
pub async fn resolve_root(spec: &RootSpec, backend: &dyn Backend) -> Result<Cap> {
    let mut cap = spec.cap.clone();
    for (i, name) in spec.path.iter().enumerate() {
        if !cap.is_directory() {
            return Err(Error::input(format!(
                "root {}: {:?} is not a directory",
                spec.label,
                spec.path[..i].join("/")
            )));
        }
        if cap.authority() == steward_cap::Authority::Verify {
            let e = crate::stage::traverse::verify_cap_cannot_list();
            return Err(Error::input(format!(
                "root {}: {} ({})",
                spec.label,
                e.message,
                e.code.as_str()
            )));
        }
        let listing = backend.list_directory(&cap).await?;
        let child = listing
            .children
            .into_iter()
            .find(|c| &c.name == name)
            .ok_or_else(|| {
                Error::input(format!(
                    "root {}: no child named {name:?} in {:?}",
                    spec.label,
                    spec.path[..i].join("/")
                ))
            })?;
        let text = child
            .rw_uri
            .as_deref()
            .or(child.ro_uri.as_deref())
            .ok_or_else(|| Error::input(format!("root {}: {name:?} has no cap", spec.label)))?;
        cap = Cap::parse(text).map_err(|e| Error::input(format!("root {}: {e}", spec.label)))?;
        if child.node_type == NodeType::Unknown {
            return Err(Error::input(format!(
                "root {}: {name:?} is of an unknown kind",
                spec.label
            )));
        }
    }
    Ok(cap)
}

/// One value of a node's tahoe.cfg (read by [`steward_format::tahoe_cfg`]).
pub fn tahoe_cfg(node_dir: &Path, section: &str, key: &str) -> Option<String> {
    let cfg = std::fs::read_to_string(node_dir.join("tahoe.cfg")).ok()?;
    steward_format::tahoe_cfg::get(&cfg, section, key).map(str::to_string)
}

/// The grid's happiness target from a node's tahoe.cfg (`[client]
/// shares.happy`).
pub fn happy_from_node(node_dir: &Path) -> Option<u64> {
    tahoe_cfg(node_dir, "client", "shares.happy")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_precedence_and_splitting() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("node.url"), "http://127.0.0.1:9/\n").unwrap();
        let got = gateway_urls(
            &["http://a/,http://b/".into(), "http://c/".into()],
            dir.path(),
        )
        .unwrap();
        assert_eq!(got, vec!["http://a/", "http://b/", "http://c/"]);
        // STEWARD_GATEWAY is process-global; only the node.url fallback is
        // tested here when it is unset.
        if std::env::var_os("STEWARD_GATEWAY").is_none() {
            assert_eq!(
                gateway_urls(&[], dir.path()).unwrap(),
                vec!["http://127.0.0.1:9/"]
            );
            let empty = tempfile::tempdir().unwrap();
            let err = gateway_urls(&[], empty.path()).unwrap_err();
            assert!(err.message.contains("--gateway"), "{err}");
        }
    }

    #[test]
    fn aliases_and_roots() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("private")).unwrap();
        let cap = "URI:LIT:mfrgg";
        std::fs::write(
            dir.path().join("private/aliases"),
            format!("# comment\nwork: {cap}\n"),
        )
        .unwrap();
        let r = parse_root("work:a/b/", dir.path()).unwrap();
        assert_eq!(r.cap.expose(), cap);
        assert_eq!(r.path, vec!["a", "b"]);
        let err = parse_root("nope:", dir.path()).unwrap_err();
        assert!(err.message.contains("unknown alias \"nope\""), "{err}");
        assert!(err.message.contains("work"), "{err}");
        let err = parse_root("plainword", dir.path()).unwrap_err();
        assert!(err.message.contains("neither a cap"), "{err}");
        let r = parse_root(&format!("{cap}/x/y"), dir.path()).unwrap();
        assert_eq!(r.path, vec!["x", "y"]);
    }

    #[test]
    fn tahoe_cfg_values_are_read_by_section() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("tahoe.cfg"),
            "[node]\nshares.happy = 9\n# [client]\n[client]\n; shares.happy = 1\nshares.needed = 2\nshares.happy = 3\n",
        )
        .unwrap();
        assert_eq!(happy_from_node(dir.path()), Some(3));
        assert_eq!(
            tahoe_cfg(dir.path(), "node", "shares.happy").as_deref(),
            Some("9")
        );
        assert_eq!(tahoe_cfg(dir.path(), "client", "nope"), None);
        assert_eq!(happy_from_node(&dir.path().join("missing")), None);
    }
}
