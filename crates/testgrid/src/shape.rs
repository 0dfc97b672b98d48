//! What grid to build and what a kept one is: [`GridConfig`] (the shape
//! and options of [`Grid::start`](crate::Grid::start)), [`GridShape`] as
//! recorded in [`GRID_FILE`] and checked on reopening, and
//! [`OpenOptions`] of [`Grid::open`](crate::Grid::open).

use anyhow::{anyhow, bail, Result};
use serde_json::Value;
use std::fmt;
use std::path::PathBuf;

/// Shape of the grid to start.
pub struct GridConfig {
    /// Number of storage nodes (default 5).
    pub storage_nodes: usize,
    /// Shares needed to recover a file, k (default 2).
    pub needed: u8,
    /// Servers an upload must reach (default 3).
    pub happy: u8,
    /// Shares written per file, N (default 5).
    pub total: u8,
    /// Number of gateways (web-API client nodes, default 1).
    pub gateways: usize,
    /// Where node directories go; `None` means a fresh temporary directory,
    /// deleted when the `Grid` is dropped. A given directory is kept, must
    /// not already hold node directories, and gets a [`GRID_FILE`] once
    /// every node was created, so that [`Grid::open`] can restart the grid
    /// later.
    pub base_dir: Option<PathBuf>,
    /// Given a storage node's index and its real listening port, the
    /// `--location` it advertises (e.g. `tcp:127.0.0.1:<proxy port>` to put a
    /// delaying proxy between gateways and that server). `None`:
    /// `tcp:127.0.0.1:<port>`.
    pub storage_location_override: Option<Box<dyn Fn(usize, u16) -> String + Send + Sync>>,
}

impl Default for GridConfig {
    fn default() -> Self {
        GridConfig {
            storage_nodes: 5,
            needed: 2,
            happy: 3,
            total: 5,
            gateways: 1,
            base_dir: None,
            storage_location_override: None,
        }
    }
}

impl fmt::Debug for GridConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GridConfig")
            .field("storage_nodes", &self.storage_nodes)
            .field("needed", &self.needed)
            .field("happy", &self.happy)
            .field("total", &self.total)
            .field("gateways", &self.gateways)
            .field("base_dir", &self.base_dir)
            .field(
                "storage_location_override",
                &self.storage_location_override.as_ref().map(|_| ".."),
            )
            .finish()
    }
}

/// The file in a grid's base directory that records its [`GridShape`]
/// (written by [`Grid::start`] when given a `base_dir`, read by
/// [`Grid::open`]).
pub const GRID_FILE: &str = "testgrid.json";

/// The shape of a grid, as recorded in [`GRID_FILE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridShape {
    /// Number of storage nodes (`storage0` .. in the base directory).
    pub storage_nodes: usize,
    /// Number of gateways (`gateway0` ..).
    pub gateways: usize,
    /// Shares needed, k.
    pub needed: u8,
    /// Servers of happiness.
    pub happy: u8,
    /// Shares written, N.
    pub total: u8,
    /// Version of the `tahoe-lafs` package that created the grid, when it
    /// could be told (from the virtualenv's `tahoe_lafs-*.dist-info`).
    pub tahoe_version: Option<String>,
}

impl GridShape {
    /// True if `cfg` asks for this shape (node counts and encoding; the
    /// Tahoe version and everything else are not compared).
    pub fn matches(&self, cfg: &GridConfig) -> bool {
        self.storage_nodes == cfg.storage_nodes
            && self.gateways == cfg.gateways
            && (self.needed, self.happy, self.total) == (cfg.needed, cfg.happy, cfg.total)
    }

    pub(crate) fn to_json(&self) -> Value {
        let mut v = serde_json::json!({
            "storage_nodes": self.storage_nodes,
            "gateways": self.gateways,
            "needed": self.needed,
            "happy": self.happy,
            "total": self.total,
        });
        if let Some(t) = &self.tahoe_version {
            v["tahoe_version"] = Value::from(t.as_str());
        }
        v
    }

    pub(crate) fn from_json(v: &Value) -> Result<GridShape> {
        let count = |k: &str| -> Result<u64> {
            v[k].as_u64()
                .ok_or_else(|| anyhow!("{GRID_FILE}: {k:?} missing or not a number"))
        };
        let small = |k: &str| -> Result<u8> {
            u8::try_from(count(k)?).map_err(|_| anyhow!("{GRID_FILE}: {k:?} out of range"))
        };
        let shape = GridShape {
            storage_nodes: count("storage_nodes")? as usize,
            gateways: count("gateways")? as usize,
            needed: small("needed")?,
            happy: small("happy")?,
            total: small("total")?,
            tahoe_version: v["tahoe_version"].as_str().map(str::to_string),
        };
        validate_shape(&shape)?;
        Ok(shape)
    }
}

pub(crate) fn validate_shape(s: &GridShape) -> Result<()> {
    if s.storage_nodes == 0 || s.gateways == 0 {
        bail!("a grid needs at least one storage node and one gateway");
    }
    if !(1 <= s.needed && s.needed <= s.happy && s.happy <= s.total) {
        bail!(
            "need 1 <= needed ({}) <= happy ({}) <= total ({})",
            s.needed,
            s.happy,
            s.total
        );
    }
    if s.happy as usize > s.storage_nodes {
        bail!(
            "happy = {} cannot be met by {} storage nodes",
            s.happy,
            s.storage_nodes
        );
    }
    Ok(())
}

/// Options for [`Grid::open`].
#[derive(Default)]
pub struct OpenOptions {
    /// As [`GridConfig::storage_location_override`]: given a storage node's
    /// index and its real listening port, the location it advertises from
    /// now on. `None`: `tcp:127.0.0.1:<port>` (so a location set by an
    /// earlier run does not outlive the proxies it pointed at).
    pub storage_location_override: Option<Box<dyn Fn(usize, u16) -> String + Send + Sync>>,
}

impl fmt::Debug for OpenOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenOptions")
            .field(
                "storage_location_override",
                &self.storage_location_override.as_ref().map(|_| ".."),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_round_trip() {
        let s = GridShape {
            storage_nodes: 5,
            gateways: 2,
            needed: 2,
            happy: 3,
            total: 5,
            tahoe_version: Some("1.20.0".into()),
        };
        assert_eq!(GridShape::from_json(&s.to_json()).unwrap(), s);
        let s = GridShape {
            tahoe_version: None,
            ..s
        };
        assert_eq!(GridShape::from_json(&s.to_json()).unwrap(), s);
        assert!(GridShape::from_json(&serde_json::json!({"storage_nodes": 1})).is_err());
        let bad = GridShape { happy: 9, ..s };
        assert!(GridShape::from_json(&bad.to_json()).is_err());
    }
}
