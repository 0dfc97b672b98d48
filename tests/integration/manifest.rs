//! `steward manifest` against Tahoe's own `t=stream-manifest` (issue 2).

use crate::common::*;
use std::os::unix::fs::PermissionsExt;
use steward::unit::{ObjectType, Unit};

/// Tahoe's stream-manifest of `cap`, as lines.
fn tahoe_manifest(cap: &str) -> Vec<String> {
    tahoe_stream(cap, "stream-manifest")
}

#[test]
fn same_units_as_tahoe_stream_manifest() {
    let g = grid();
    let tree = build_tree(g, "manifest-same");
    let tahoe = tahoe_manifest(&tree.root);
    // With one listing in flight and write caps, steward walks in Tahoe's
    // order and writes the same lines, byte for byte, but the stats.
    let (code, out, err) = run(stw(&["manifest", "-j", "1", "--caps", "write", &tree.root]));
    assert_eq!(code, 0, "{err}");
    let ts = assert_tahoe_lines_but_stats(&out, &tahoe);
    // Stats: every key equal, but the directory byte sizes, which a listing
    // cannot give (documented as null).
    let os = stats(&units(&out));
    for (k, v) in ts.as_object().unwrap() {
        if k == "size-directories" || k == "largest-directory" {
            assert!(os[k].is_null(), "{k} is documented as unknown");
        } else {
            assert_eq!(&os[k], v, "stats key {k}");
        }
    }
    // Every reachable object once: 14 unique objects, the shared directory
    // and the cycle included once; LIT files each time they are linked.
    let objs = objects(&units(&out));
    assert_eq!(objs.len(), tree.caps.len());
    let mut sis: Vec<&str> = objs
        .iter()
        .map(|o| o.storage_index.as_str())
        .filter(|s| !s.is_empty())
        .collect();
    let n = sis.len();
    sis.sort();
    sis.dedup();
    assert_eq!(sis.len(), n, "no object twice");
    let paths = by_path(&objs);
    let long = paths
        .keys()
        .find(|p| p.contains(LONG_NAME))
        .expect("the non-ASCII name");
    assert!(long.ends_with(&"L".repeat(200)));
    assert!(
        out.contains("\\u00e9"),
        "non-ASCII written as \\u escapes, as Tahoe does"
    );
    assert_eq!(paths["imm"].object_type, ObjectType::Directory);
    assert!(paths["imm"].cap.starts_with("URI:DIR2-CHK:"));
    assert!(paths["lit"].verifycap.is_empty() && paths["lit"].storage_index.is_empty());
}

#[test]
fn parallel_walk_finds_the_same_objects() {
    let g = grid();
    let tree = build_tree(g, "manifest-parallel");
    let mut want: Vec<String> = tahoe_manifest(&tree.root)
        .iter()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["type"] != "stats").then(|| format!("{}|{}", v["type"], v["verifycap"]))
        })
        .collect();
    let (code, out, err) = run(stw(&["manifest", "-j", "16", &tree.root]));
    assert_eq!(code, 0, "{err}");
    let mut got: Vec<String> = objects(&units(&out))
        .iter()
        .map(|o| {
            format!(
                "\"{}\"|\"{}\"",
                serde_json::to_value(o.object_type)
                    .unwrap()
                    .as_str()
                    .unwrap(),
                o.verifycap
            )
        })
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got, want);
}

#[test]
fn least_authority_and_private_files() {
    let g = grid();
    let tree = build_tree(g, "manifest-authority");
    let dir = tempfile::tempdir().unwrap();
    let write_kinds = ["URI:DIR2:", "URI:SSK:", "URI:MDMF:", "URI:DIR2-MDMF:"];
    // Default: read caps, no write cap anywhere.
    let out = dir.path().join("read.ndjson");
    let (code, _, err) = run(stw(&[
        "manifest",
        "-q",
        &tree.root,
        "-o",
        out.to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&out).unwrap();
    for k in write_kinds {
        assert!(
            !text.contains(k),
            "a write cap ({k}) in a --caps read manifest"
        );
    }
    let objs = objects(&units(&text));
    let sdmf = &by_path(&objs)["sdmf"];
    assert!(sdmf.cap.starts_with("URI:SSK-RO:"));
    assert_eq!(
        sdmf.repaircap, "",
        "repairing a mutable file needs its write cap, which is not written"
    );
    assert_eq!(
        by_path(&objs)["a/chk0"].repaircap,
        by_path(&objs)["a/chk0"].verifycap,
        "Tahoe's repair cap of an immutable file is its verify cap"
    );
    // Verify caps only: nothing that can read.
    let (code, vout, err) = run(stw(&["manifest", "--caps", "verify", &tree.root]));
    assert_eq!(code, 0, "{err}");
    for o in objects(&units(&vout)) {
        for c in [&o.cap, &o.repaircap] {
            assert!(
                c.is_empty() || c.contains("-Verifier:"),
                "{:?} at {:?}",
                steward_cap::redact(c),
                o.path
            );
        }
        if o.verifycap.is_empty() {
            assert!(
                o.cap.is_empty(),
                "a LIT cap is its data: not written in verify mode"
            );
        }
    }
    // Write caps only when asked.
    let (_, wout, _) = run(stw(&["manifest", "--caps", "write", &tree.root]));
    assert!(wout.contains("URI:DIR2:") && wout.contains("URI:SSK:"));
}

#[test]
fn an_unrecoverable_directory_is_reported_and_the_walk_goes_on() {
    let g = grid();
    let tree = build_tree(g, "manifest-broken");
    g.make_unrecoverable(&tree.si("broken")).unwrap();
    // Tahoe's own stream stops at it.
    let tahoe = tahoe_manifest(&tree.root);
    assert!(
        tahoe.iter().any(|l| l.starts_with("ERROR:")),
        "Tahoe 1.20 stops with an ERROR line"
    );
    let (code, out, err) = run(stw(&["manifest", &tree.root]));
    assert_eq!(
        code, 1,
        "non-zero exit when a directory could not be listed"
    );
    assert!(err.contains("1 directories could not be listed"), "{err}");
    let us = units(&out);
    let objs = objects(&us);
    let paths = by_path(&objs);
    let broken = &paths["broken"];
    let e = broken
        .error
        .as_ref()
        .expect("an error on the broken directory");
    assert_eq!(e.code, "unrecoverable");
    assert!(!e.message.contains('\n'));
    // Everything else is there: all objects but the broken directory's child.
    assert_eq!(objs.len(), tree.caps.len() - 1);
    assert!(!paths.contains_key("broken/inner"));
    assert!(paths.contains_key("sdmf") && paths.contains_key("imm/child"));
    stats(&us);
}

#[test]
fn aliases_and_subpaths_are_resolved_from_the_node_directory() {
    let g = grid();
    let tree = build_tree(g, "manifest-alias");
    let node = tempfile::tempdir().unwrap();
    std::fs::create_dir(node.path().join("private")).unwrap();
    std::fs::write(node.path().join("node.url"), g.gateway_url()).unwrap();
    std::fs::write(
        node.path().join("private/aliases"),
        format!("work: {}\n", tree.root),
    )
    .unwrap();
    let mut c = steward();
    c.args(["manifest", "work:a", "-d", node.path().to_str().unwrap()]);
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{err}");
    let objs = objects(&units(&out));
    assert_eq!(
        objs[0].path,
        Vec::<String>::new(),
        "paths are relative to the root given"
    );
    assert!(by_path(&objs).contains_key("shared"));
    assert_eq!(
        objs.len(),
        6,
        "a, its three files, shared and its file: {:?}",
        by_path(&objs).keys()
    );
    // An unknown alias: a clear one-line error naming it.
    let mut c = steward();
    c.args(["manifest", "nosuch:", "-d", node.path().to_str().unwrap()]);
    let (code, out, err) = run(c);
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert!(
        err.contains("unknown alias \"nosuch\"") && err.trim().lines().count() == 1,
        "{err}"
    );
}

#[test]
fn bad_input_ends_with_one_clear_line() {
    let g = grid();
    let tree = build_tree(g, "manifest-bad");
    // A malformed cap: named, but never printed whole.
    let bad = format!("{}x", &tree.root[..tree.root.len() - 3]);
    let (code, out, err) = run(stw(&["manifest", &bad]));
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        !err.contains(&bad[9..]),
        "the cap must not be printed: {err}"
    );
    // A gateway that is down: fails at once, not after minutes of retries.
    let port = steward_testgrid::free_port();
    let t0 = std::time::Instant::now();
    let mut c = steward();
    c.args([
        "manifest",
        &tree.root,
        "--gateway",
        &format!("http://127.0.0.1:{port}/"),
    ]);
    let (code, out, err) = run(c);
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert!(err.contains("not reachable"), "{err}");
    assert!(!err.contains(&tree.root), "{err}");
    assert!(t0.elapsed().as_secs() < 20);
    // Not a cap and not an alias.
    let (code, _, err) = run(stw(&["manifest", "hello"]));
    assert_eq!(code, 2);
    assert!(err.contains("neither a cap"), "{err}");
}

#[test]
fn a_file_root_is_one_unit_and_stats() {
    let g = grid();
    let tree = build_tree(g, "manifest-file");
    let (code, out, _) = run(stw(&["manifest", tree.cap("a/chk1")]));
    assert_eq!(code, 0);
    let us = units(&out);
    assert_eq!(us.len(), 2);
    assert!(matches!(&us[0], Unit::Object(o) if o.object_type == ObjectType::File));
    assert_eq!(stats(&us)["count-immutable-files"], 1);
}

#[test]
fn the_gateway_client_reads_tahoes_own_streams_line_by_line() {
    use steward_gateway::StreamItem;
    let g = grid();
    let tree = build_tree(g, "manifest-stream");
    let broken = build_tree(g, "manifest-stream-broken");
    g.make_unrecoverable(&broken.si("broken")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let gw = steward_gateway::Gateway::new(
        steward_gateway::GatewayOptions {
            urls: vec![g.gateway_url()],
            ..Default::default()
        },
        steward_backend::Scheduler::new(64),
    )
    .unwrap();
    let read_all = |cap: &str, t: &str| {
        let cap = steward_cap::Cap::parse(cap).unwrap();
        rt.block_on(async {
            let mut r = gw.stream(&cap, t, &[]).await.unwrap();
            let mut items = vec![];
            while let Some(i) = r.next().await {
                items.push(i.unwrap());
            }
            items
        })
    };
    // A healthy tree: every unit, then stats, no error.
    let items = read_all(&tree.root, "stream-manifest");
    assert_eq!(items.len(), tree.caps.len() + 1);
    assert!(matches!(items.last(), Some(StreamItem::Unit(v)) if v["type"] == "stats"));
    // The same as steward's own units, object for object.
    let (_, out, _) = run(stw(&["manifest", "-j", "1", "--caps", "write", &tree.root]));
    let ours = units(&out);
    for (i, u) in items.iter().zip(&ours).take(tree.caps.len()) {
        let StreamItem::Unit(v) = i else { panic!() };
        assert_eq!(steward::unit::Unit::parse(&v.to_string()).unwrap(), *u);
    }
    // A deep-check stream with an unrecoverable directory ends with an
    // ERROR item, whose text holds no cap.
    let items = read_all(&broken.root, "stream-deep-check");
    let Some(StreamItem::Error(e)) = items.last() else {
        panic!("no ERROR item: {:?}", items.last())
    };
    assert!(
        e.contains("UnrecoverableFileError") || e.contains("NotEnoughShares"),
        "{e}"
    );
    assert!(!e.contains(&broken.root[9..]));
}
