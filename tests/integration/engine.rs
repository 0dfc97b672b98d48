//! The engine (issue 9): several operations in one process share one
//! request scheduler. Two deep checks against one real gateway, a big tree
//! and a small one: the gateway never sees more requests at once than its
//! cap (counted at a proxy in front of it), the small one is not starved
//! (it finishes in less than three times its time alone), and both
//! outputs equal those of runs made one at a time.

use crate::common::*;
use crate::proxy::Proxy;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use steward::engine::Runner;
use steward::pipeline::{deep_check, DeepCheck, DeepCheckOutput};
use steward::stage::check::Checker;
use steward::stage::traverse::TraverseOptions;
use steward::stage::MappedOptions;
use steward::unit::{Unit, UnitSink};
use steward_backend::{Backend, CheckOptions, Scheduler, Tenant};
use steward_cap::{Authority, Cap};
use steward_gateway::{Gateway, GatewayOptions};
use steward_testgrid::{Grid, GridConfig};

/// A tree of `dirs` directories of `files` immutable files each: small
/// uploaded files, or (`uploaded` false) caps of files that were never
/// uploaded, which a gateway checks like any other (asking every server,
/// finding no shares) at a fraction of the cost of building the tree.
fn wide_tree(g: &Grid, name: &str, dirs: usize, files: usize, uploaded: bool) -> String {
    let t = tag(name);
    let root = g.mkdir().unwrap();
    let urls = g.gateway_urls();
    // A few at a time: a gateway publishing dozens of directories at once
    // runs out of patience with its servers on a busy machine.
    let make_dir = |d: usize| {
        let mut children = serde_json::Map::new();
        for f in 0..files {
            let data = format!("{t} {d} {f} {}", "w".repeat(60 + f));
            let cap = if uploaded {
                upload_via(&urls[(d + f) % urls.len()], data.as_bytes())
            } else {
                never_uploaded(data.as_bytes())
            };
            children.insert(
                format!("f{f:03}"),
                serde_json::json!(["filenode", {"ro_uri": cap}]),
            );
        }
        let dir = g
            .mkdir_with_children(serde_json::Value::Object(children))
            .unwrap();
        g.link(&root, &format!("d{d:03}"), &dir).unwrap();
    };
    for chunk in (0..dirs).collect::<Vec<_>>().chunks(4) {
        std::thread::scope(|s| {
            for &d in chunk {
                let make_dir = &make_dir;
                s.spawn(move || make_dir(d));
            }
        });
    }
    root
}

/// A well-formed CHK cap whose shares exist nowhere.
fn never_uploaded(data: &[u8]) -> String {
    let key = steward_cap::hash::tagged_hash(b"engine-test-key", data, 16);
    let ueb = steward_cap::hash::tagged_hash(b"engine-test-ueb", data, 32);
    format!(
        "URI:CHK:{}:{}:2:5:{}",
        steward_cap::base32::encode(&key),
        steward_cap::base32::encode(&ueb),
        data.len()
    )
}

fn upload_via(gateway: &str, data: &[u8]) -> String {
    let r = reqwest::blocking::Client::new()
        .put(format!("{gateway}uri?format=CHK"))
        .body(data.to_vec())
        .send()
        .unwrap();
    assert!(r.status().is_success());
    r.text().unwrap().trim().to_string()
}

struct Collect(Vec<String>);

#[async_trait::async_trait]
impl UnitSink for Collect {
    async fn emit(&mut self, unit: Unit) -> steward::Result<()> {
        self.0.push(unit.to_line());
        Ok(())
    }
    async fn sync(&mut self) -> steward::Result<u64> {
        Ok(0)
    }
}

/// One deep check of `root` for `tenant`; its units (sorted: the walk is
/// parallel) and how long it took.
async fn run_one(gw: &Gateway, tenant: Tenant, root: &str) -> (Vec<String>, Duration) {
    let backend: Arc<dyn Backend> = gw.for_tenant(tenant);
    let plan = DeepCheck {
        lister: backend.clone(),
        traverse: TraverseOptions {
            jobs: 8,
            caps: Authority::Read,
            ..Default::default()
        },
        checker: Checker {
            backend,
            opts: CheckOptions::default(),
        },
        mapped: MappedOptions::new(64),
        repairer: None,
    };
    let root = Cap::parse(root).unwrap();
    let runner = Runner::new(None, Arc::new(steward::engine::Stderr), None);
    let mut sink = Collect(vec![]);
    let started = Instant::now();
    deep_check(plan, &root, DeepCheckOutput::Sink(&mut sink), &runner)
        .await
        .unwrap();
    let took = started.elapsed();
    (comparable(sink.0), took)
}

/// Units keyed by object, with what may differ between two walks of a
/// healthy tree left out: which path reached a shared object, and the
/// order in which a gateway lists servers.
fn comparable(lines: Vec<String>) -> Vec<String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for l in lines {
        let u = Unit::parse(&l).unwrap();
        match u {
            Unit::Object(o) => {
                let healthy = o
                    .check_results
                    .as_ref()
                    .map(|c| c["results"]["healthy"].clone());
                let good = o
                    .check_results
                    .as_ref()
                    .map(|c| c["results"]["count-shares-good"].clone());
                out.insert(
                    format!("{} {}", o.storage_index, o.path.join("/")),
                    format!("{} {healthy:?} {good:?} {:?}", o.cap, o.error),
                );
            }
            Unit::Stats(s, _) => {
                out.insert("~stats".into(), s.to_string());
            }
        }
    }
    out.into_iter().map(|(k, v)| format!("{k} {v}")).collect()
}

#[test]
fn two_operations_share_one_gateway_fairly() {
    // A grid of its own: the timings compare runs of this test alone,
    // which other tests' load on a shared gateway would blur.
    let g = &Grid::start(GridConfig {
        storage_nodes: 3,
        needed: 2,
        happy: 2,
        total: 3,
        gateways: 1,
        ..Default::default()
    })
    .expect("start the engine test's grid");
    let big = wide_tree(g, "engine-big", 40, 49, false); // 40 dirs + 1,960 files + root
    let small = wide_tree(g, "engine-small", 2, 24, true); // 2 dirs + 48 files + root
    let proxy = Proxy::start(&g.gateway_url());
    const CAP: usize = 6;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sched = Scheduler::new(1024);
    let gw = Gateway::new(
        GatewayOptions {
            urls: vec![proxy.url.clone()],
            max_in_flight: CAP,
            adaptive: false,
            ..Default::default()
        },
        sched.clone(),
    )
    .unwrap();

    // Timings on a shared machine are noisy: the small one is timed five
    // times alone and five times beside the big one, medians compared.
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let mut small_alone = Vec::new();
    let mut alone_times = Vec::new();
    for _ in 0..5 {
        let (units, took) = rt.block_on(run_one(&gw, Tenant::new("small", 1), &small));
        small_alone = units;
        alone_times.push(took);
    }
    assert_eq!(small_alone.len(), 2 + 48 + 1 + 1);

    // Together: the small one starts once the big one is well under way,
    // five times in a row while the big one runs.
    proxy.reset_peak();
    let (big_together, small_together, together_times, big_was_running) = rt.block_on(async {
        let big_done = std::sync::atomic::AtomicBool::new(false);
        let big_run = async {
            let r = run_one(&gw, Tenant::new("big", 1), &big).await;
            big_done.store(true, std::sync::atomic::Ordering::SeqCst);
            r
        };
        let small_runs = async {
            let start = proxy.requests();
            while proxy.requests() < start + 300 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let mut times = Vec::new();
            let mut units = Vec::new();
            for _ in 0..5 {
                let (u, took) = run_one(&gw, Tenant::new("small", 1), &small).await;
                units = u;
                times.push(took);
            }
            let running = !big_done.load(std::sync::atomic::Ordering::SeqCst);
            (units, times, running)
        };
        let ((b, _), (s, times, running)) = tokio::join!(big_run, small_runs);
        (b, s, times, running)
    });
    let peak = proxy.peak_in_flight();
    let (big_alone, big_alone_took) = rt.block_on(run_one(&gw, Tenant::new("big", 1), &big));
    assert_eq!(big_alone.len(), 40 + 1960 + 1 + 1);
    let (alone, together) = (median(alone_times.clone()), median(together_times.clone()));
    eprintln!(
        "small alone {alone_times:?}, beside the big one {together_times:?}; big alone {big_alone_took:?}; peak in flight at the gateway {peak}"
    );
    assert!(
        big_was_running,
        "the big operation ended before the small ones did: make it bigger"
    );
    assert!(peak as usize <= CAP, "{peak} requests at once, cap {CAP}");
    assert!(peak >= 2, "the cap was used ({peak})");
    assert!(
        together < alone * 3,
        "the small operation took {together:?} beside the big one, {alone:?} alone (medians of 5)"
    );
    assert_eq!(small_together, small_alone);
    assert_eq!(big_together, big_alone);
}
