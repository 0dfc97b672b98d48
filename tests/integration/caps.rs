//! Local cap derivation compared with what the gateway reports for the
//! same objects (issue 2: "tests compare every derivation with what the
//! gateway reports").

use crate::common::{build_tree, grid};
use steward_cap::{Authority, Cap};

#[test]
fn derivations_match_the_gateway_for_every_kind() {
    let g = grid();
    let tree = build_tree(g, "caps");
    let mut kinds = std::collections::BTreeSet::new();
    for (path, cap_text) in &tree.caps {
        let info = g.get_json(&format!("uri/{cap_text}?t=json")).unwrap();
        let d = &info[1];
        let cap = Cap::parse(cap_text).unwrap_or_else(|e| panic!("{path}: {e}"));
        kinds.insert(format!("{:?}", cap.kind()));
        let ro = d["ro_uri"].as_str().unwrap();
        assert_eq!(
            cap.to_read_cap().unwrap().expose(),
            ro,
            "read cap of {path}"
        );
        let read = Cap::parse(ro).unwrap();
        kinds.insert(format!("{:?}", read.kind()));
        match d.get("verify_uri").and_then(|v| v.as_str()) {
            Some(vc) => {
                assert_eq!(
                    cap.to_verify_cap().unwrap().expose(),
                    vc,
                    "verify cap of {path}"
                );
                assert_eq!(
                    read.to_verify_cap().unwrap().expose(),
                    vc,
                    "verify cap of {path} from its read cap"
                );
                let verify = Cap::parse(vc).unwrap();
                kinds.insert(format!("{:?}", verify.kind()));
                assert_eq!(verify.authority(), Authority::Verify);
                assert_eq!(verify.to_verify_cap().unwrap().expose(), vc);
                let si = vc.split(':').nth(2).unwrap();
                assert_eq!(cap.storage_index().unwrap().to_string(), si, "SI of {path}");
                assert_eq!(verify.storage_index().unwrap().to_string(), si);
            }
            None => {
                assert!(
                    cap.is_literal(),
                    "{path}: only literal objects lack a verify cap"
                );
                assert!(cap.to_verify_cap().is_none());
            }
        }
        if let Some(rw) = d.get("rw_uri").and_then(|v| v.as_str()) {
            assert_eq!(rw, cap.expose(), "{path}: the gateway echoes the write cap");
            assert_eq!(cap.authority(), Authority::Write);
        }
    }
    // The tree holds every kind Tahoe 1.20 emits for these objects.
    for k in [
        "Chk",
        "ChkVerifier",
        "Lit",
        "Ssk",
        "SskRo",
        "SskVerifier",
        "Mdmf",
        "MdmfRo",
        "MdmfVerifier",
        "Dir2",
        "Dir2Ro",
        "Dir2Verifier",
        "Dir2Chk",
        "Dir2ChkVerifier",
        "Dir2Mdmf",
        "Dir2MdmfRo",
        "Dir2MdmfVerifier",
        "Dir2Lit",
    ] {
        assert!(kinds.contains(k), "the tree has no {k} cap: {kinds:?}");
    }
}

#[test]
fn mdmf_and_literal_directories_match_the_gateway() {
    let g = grid();
    let dir = g.post("uri?t=mkdir&format=MDMF").unwrap().1;
    let cap = Cap::parse(dir.trim()).unwrap();
    assert_eq!(format!("{:?}", cap.kind()), "Dir2Mdmf");
    let info = g.get_json(&format!("uri/{}?t=json", dir.trim())).unwrap();
    assert_eq!(
        cap.to_read_cap().unwrap().expose(),
        info[1]["ro_uri"].as_str().unwrap()
    );
    assert_eq!(
        cap.to_verify_cap().unwrap().expose(),
        info[1]["verify_uri"].as_str().unwrap()
    );
    // An empty immutable directory is a literal one.
    let lit_dir = g.mkdir_immutable(serde_json::json!({})).unwrap();
    let lc = Cap::parse(&lit_dir).unwrap();
    assert_eq!(format!("{:?}", lc.kind()), "Dir2Lit");
    assert!(lc.storage_index().is_none());
    let info = g.get_json(&format!("uri/{lit_dir}?t=json")).unwrap();
    assert_eq!(
        lc.to_read_cap().unwrap().expose(),
        info[1]["ro_uri"].as_str().unwrap()
    );
}
