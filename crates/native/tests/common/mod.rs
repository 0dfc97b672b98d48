//! What the native crate's grid tests share: the grid, a runtime, unique
//! data, cap helpers, and results compared without Python's set order.

#![allow(dead_code)] // each test binary uses its own part

use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::OnceLock;
use steward_cap::Cap;
use steward_testgrid::{Grid, GridConfig};

pub use steward_testgrid::unique_data;

/// The grid this test binary shares (started once, killed with it).
pub fn grid() -> &'static Grid {
    static GRID: OnceLock<Grid> = OnceLock::new();
    GRID.get_or_init(|| Grid::start(GridConfig::default()).expect("starting the shared grid"))
}

pub fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

/// A scheduler of its own for each backend a test makes.
pub fn sched() -> std::sync::Arc<steward_backend::Scheduler> {
    steward_backend::Scheduler::new(4096)
}

pub fn si_of(cap: &str) -> String {
    Cap::parse(cap)
        .unwrap()
        .storage_index()
        .unwrap()
        .to_string()
}

pub fn verify_cap(cap: &str) -> String {
    Cap::parse(cap)
        .unwrap()
        .to_verify_cap()
        .unwrap()
        .expose()
        .to_string()
}

pub fn read_cap(cap: &str) -> String {
    Cap::parse(cap)
        .unwrap()
        .to_read_cap()
        .unwrap()
        .expose()
        .to_string()
}

/// Sort arrays (`servers-responding`, sharemap values, corrupt-share
/// locators) and object keys, so that only contents are compared, not
/// Python's set ordering.
pub fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, Value> =
                m.iter().map(|(k, v)| (k, canonical(v))).collect();
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(a) => {
            let mut items: Vec<Value> = a.iter().map(canonical).collect();
            items.sort_by_key(|x| x.to_string());
            Value::Array(items)
        }
        other => other.clone(),
    }
}
