//! Every piece against what Tahoe-LAFS 1.20's own code produced
//! (`vectors/generate.py`): hashes, hash trees, zfec, AES, CHK, SDMF and
//! MDMF shares, directories.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use steward_cap::hash;
use steward_cap::Cap;
use steward_format::aes;
use steward_format::chk::ChkHeader;
use steward_format::directory::read_directory;
use steward_format::dirnode::{self, PackEntry};
use steward_format::hashtree::{self, HashTree, IncompleteHashTree};
use steward_format::mutable::{self, MutableCap, MutableHeader};
use steward_format::read::{read_chk, read_mutable};
use steward_format::uri_extension::UriExtension;
use steward_format::verify::{
    verify_chk_share, verify_mutable_share, SharePart, ShareVerifier, Verdict, VerifyOptions,
};
use steward_format::zfec::Fec;

#[test]
fn tagged_hashes_match_hashutil() {
    let v = load("hashes.json");
    for c in v["single"].as_array().unwrap() {
        let input = hex(&c["input"]);
        assert_eq!(hash::block_hash(&input), hex32(&c["block_hash"]));
        assert_eq!(
            hash::uri_extension_hash(&input),
            hex32(&c["uri_extension_hash"])
        );
        assert_eq!(hash::crypttext_hash(&input), hex32(&c["crypttext_hash"]));
        assert_eq!(
            hash::crypttext_segment_hash(&input),
            hex32(&c["crypttext_segment_hash"])
        );
        assert_eq!(
            hash::ssk_pubkey_fingerprint_hash(&input),
            hex32(&c["ssk_pubkey_fingerprint_hash"])
        );
        assert_eq!(
            hash::ssk_writekey_hash(&input).to_vec(),
            hex(&c["ssk_writekey_hash"])
        );
        assert_eq!(
            hash::mutable_rwcap_salt_hash(&input).to_vec(),
            hex(&c["mutable_rwcap_salt_hash"])
        );
        assert_eq!(hash::hmac(&[b'k'; 16], &input), hex32(&c["hmac_key16"]));
        assert_eq!(hashtree::empty_leaf_hash(7), hex32(&c["empty_leaf_hash_7"]));
        let b = hash::block_hash(&input);
        assert_eq!(
            hashtree::pair_hash(&b, &b),
            hex32(&c["pair_hash_with_itself"])
        );
    }
    let p = &v["pairs"];
    let (salt, readkey) = (hex(&p["salt"]), hex(&p["readkey"]));
    assert_eq!(
        hash::ssk_readkey_data_hash(&salt, &readkey).to_vec(),
        hex(&p["ssk_readkey_data_hash"])
    );
    assert_eq!(
        aes::mutable_data_key(
            &salt.clone().try_into().unwrap(),
            &readkey.clone().try_into().unwrap()
        )
        .to_vec(),
        hex(&p["ssk_readkey_data_hash"])
    );
    assert_eq!(
        hash::mutable_rwcap_key_hash(&salt, &readkey).to_vec(),
        hex(&p["mutable_rwcap_key_hash"])
    );
}

#[test]
fn hash_trees_match_hashtree_py() {
    for t in load("hashtree.json").as_array().unwrap() {
        let n = t["num_leaves"].as_u64().unwrap() as usize;
        let leaves: Vec<[u8; 32]> = t["leaves"].as_array().unwrap().iter().map(hex32).collect();
        let nodes: Vec<[u8; 32]> = t["nodes"].as_array().unwrap().iter().map(hex32).collect();
        let tree = HashTree::new(&leaves);
        assert_eq!(tree.nodes(), &nodes[..], "{n} leaves");
        assert_eq!(hashtree::tree_len(n as u64), Some(nodes.len() as u64));
        for leaf in 0..n {
            let want = |key: &str| -> Vec<usize> {
                t[key][leaf.to_string()]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as usize)
                    .collect()
            };
            assert_eq!(tree.needed_hashes(leaf, false), want("needed"));
            assert_eq!(tree.needed_hashes(leaf, true), want("needed_with_leaf"));
            // an incomplete tree checks the leaf with exactly those hashes
            let mut it = IncompleteHashTree::new(n).unwrap();
            it.set_hashes(&BTreeMap::from([(0, nodes[0])]), &BTreeMap::new())
                .unwrap();
            assert_eq!(it.needed_hashes(leaf, false), want("needed"));
            let chain = want("needed").into_iter().map(|i| (i, nodes[i])).collect();
            it.set_hashes(&chain, &BTreeMap::from([(leaf, leaves[leaf])]))
                .unwrap();
        }
    }
}

#[test]
fn zfec_matches_python_zfec() {
    let v = load("zfec.json");
    let mut pairs = 0;
    for c in v.as_array().unwrap() {
        let (k, m) = (
            c["k"].as_u64().unwrap() as usize,
            c["m"].as_u64().unwrap() as usize,
        );
        let input: Vec<Vec<u8>> = c["input"].as_array().unwrap().iter().map(hex).collect();
        let output: Vec<Vec<u8>> = c["output"].as_array().unwrap().iter().map(hex).collect();
        let fec = Fec::new(k, m).unwrap();
        let refs: Vec<&[u8]> = input.iter().map(Vec::as_slice).collect();
        assert_eq!(fec.encode(&refs).unwrap(), output, "{k}-of-{m} encoding");
        for nums in c["decode_from"].as_array().unwrap() {
            let mut nums: Vec<usize> = nums
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .collect();
            for _ in 0..2 {
                let blocks: Vec<(usize, &[u8])> =
                    nums.iter().map(|&i| (i, output[i].as_slice())).collect();
                assert_eq!(
                    fec.decode(&blocks).unwrap(),
                    input,
                    "{k}-of-{m} from {nums:?}"
                );
                nums.reverse();
            }
        }
        pairs += 1;
    }
    assert!(pairs >= 20);
}

#[test]
fn aes_ctr_matches_tahoe() {
    for c in load("aes.json").as_array().unwrap() {
        let key: [u8; 16] = hex(&c["key"]).try_into().unwrap();
        let iv: [u8; 16] = match &c["iv"] {
            Value::Null => aes::ZERO_IV,
            x => hex(x).try_into().unwrap(),
        };
        let mut data = hex(&c["plaintext"]);
        aes::apply_keystream(&key, &iv, 0, &mut data);
        assert_eq!(data, hex(&c["ciphertext"]));
        // decrypting from an offset continues the same keystream
        if data.len() > 20 {
            let mut tail = data[17..].to_vec();
            aes::apply_keystream(&key, &iv, 17, &mut tail);
            assert_eq!(tail, hex(&c["plaintext"])[17..]);
        }
    }
}

fn chk_vectors() -> Vec<Value> {
    load("chk.json").as_array().unwrap().clone()
}

#[test]
fn chk_headers_and_uebs_parse_as_tahoe_reads_them() {
    for v in chk_vectors() {
        let name = v["name"].as_str().unwrap();
        let shares = shares(&v);
        let layout = &v["layout"];
        let h = ChkHeader::parse(&shares[0].1).unwrap();
        assert_eq!(
            h.version as u64,
            layout["version"].as_u64().unwrap(),
            "{name}"
        );
        let o = &layout["offsets"];
        let want = |k: &str| o[k].as_u64().unwrap();
        assert_eq!(
            (
                h.data,
                h.plaintext_hash_tree,
                h.crypttext_hash_tree,
                h.block_hashes,
                h.share_hashes,
                h.uri_extension
            ),
            (
                want("data"),
                want("plaintext_hash_tree"),
                want("crypttext_hash_tree"),
                want("block_hashes"),
                want("share_hashes"),
                want("uri_extension")
            ),
            "{name}"
        );
        let ueb_bytes = b64(&v["ueb"]);
        let ueb = UriExtension::parse(&ueb_bytes).unwrap();
        assert_eq!(ueb.pack(), ueb_bytes, "{name}: pack gives Tahoe's bytes");
        for (key, val) in v["ueb_fields"].as_object().unwrap() {
            match val {
                Value::Number(n) => assert_eq!(
                    ueb.number(Box::leak(key.clone().into_boxed_str())).unwrap(),
                    n.as_u64()
                ),
                s => assert_eq!(ueb.get(key).unwrap(), hex(s), "{name}: {key}"),
            }
        }
        let cap = chk_cap(&v, "verifycap");
        assert_eq!(hash::uri_extension_hash(&ueb_bytes), cap.ueb_hash);
    }
}

#[test]
fn chk_shares_verify_and_decode_to_the_file() {
    for v in chk_vectors() {
        let name = v["name"].as_str().unwrap();
        let shares = shares(&v);
        let plaintext = b64(&v["plaintext"]);
        let readcap = chk_cap(&v, "readcap");
        let verifycap = chk_cap(&v, "verifycap");
        assert_eq!(verifycap.key, None);
        for (shnum, data) in &shares {
            let (verdict, params, _) = verify_chk_share(&verifycap, *shnum, data);
            assert_eq!(verdict, Verdict::Good, "{name} share {shnum}");
            let p = params.unwrap();
            assert_eq!(p.size, plaintext.len() as u64);
            // the same in many small reads, and counted
            let mut sv = ShareVerifier::chk(&verifycap, *shnum, data.len() as u64, small_reads());
            let run = drive(&mut sv, data);
            assert_eq!(
                run.verdict,
                Verdict::Good,
                "{name} share {shnum}, small reads"
            );
            assert!(run.reads.len() >= 4);
            assert_eq!(
                sv.bytes_requested(),
                run.reads.iter().map(|r| r.end - r.start).sum::<u64>()
            );
            // the same reads into one reused buffer, never grown past the
            // largest read
            let mut owned =
                ShareVerifier::chk(&verifycap, *shnum, data.len() as u64, small_reads());
            let (orun, most) = drive_owned(&mut owned, data);
            assert_eq!((&orun.verdict, &orun.reads), (&run.verdict, &run.reads));
            let largest = run.reads.iter().map(|r| r.end - r.start).max().unwrap();
            assert!(most as u64 <= 2 * largest, "{name}: {most}");
            // with default options a small share is read in one request
            let mut whole = ShareVerifier::chk(
                &verifycap,
                *shnum,
                data.len() as u64,
                VerifyOptions::default(),
            );
            let run = drive(&mut whole, data);
            assert_eq!((run.verdict, run.reads.len()), (Verdict::Good, 1), "{name}");
        }
        let refs: Vec<(usize, &[u8])> = shares.iter().map(|(n, d)| (*n, d.as_slice())).collect();
        let got = read_chk(&readcap, &refs).unwrap();
        assert_eq!(got.plaintext, plaintext, "{name}");
        // from the last k shares only (parity shares when N > k)
        let k = readcap.k as usize;
        let got = read_chk(&readcap, &refs[refs.len() - k..]).unwrap();
        assert_eq!(got.plaintext, plaintext, "{name}, last {k} shares");
        assert!(read_chk(&verifycap, &refs).is_err());
        if k > 1 {
            assert!(read_chk(&readcap, &refs[..k - 1]).is_err());
        }
    }
}

/// Flips one byte at the start, middle and end of each part of share 0
/// (parts located by Tahoe's own reader) and checks the verifier blames
/// that part, streaming or not.
#[test]
fn chk_flipped_byte_in_each_part_is_found_there() {
    for v in chk_vectors() {
        let name = v["name"].as_str().unwrap();
        let shares = shares(&v);
        let verifycap = chk_cap(&v, "verifycap");
        let readcap = chk_cap(&v, "readcap");
        let parts = &v["layout"]["parts"];
        let h = ChkHeader::parse(&shares[0].1).unwrap();
        let p = verify_chk_share(&verifycap, 0, &shares[0].1).1.unwrap();
        for (key, part) in [
            ("uri_extension", SharePart::UriExtension),
            ("share_hash_chain", SharePart::ShareHashChain),
            ("block_hash_tree", SharePart::BlockHashTree),
            ("crypttext_hash_tree", SharePart::CrypttextHashTree),
            ("block_data", SharePart::BlockData { segment: 0 }),
        ] {
            let r = range(&parts[key]);
            for at in [r.start, (r.start + r.end) / 2, r.end - 1] {
                let mut bad = shares[0].1.clone();
                bad[at] ^= 0x01;
                let want = match part {
                    SharePart::BlockData { .. } => SharePart::BlockData {
                        segment: (at as u64 - h.data) / p.segments.block_size,
                    },
                    x => x,
                };
                let (verdict, _, _) = verify_chk_share(&verifycap, 0, &bad);
                let Verdict::Corrupt(c) = &verdict else {
                    panic!("{name}: flip at {at} in {key} not found: {verdict:?}");
                };
                assert_eq!(c.part, want, "{name}: flip at {at} in {key}: {c}");
                let mut sv = ShareVerifier::chk(&verifycap, 0, bad.len() as u64, small_reads());
                assert_eq!(drive(&mut sv, &bad).verdict, verdict, "{name}: streaming");
                // the reader skips the bad share and reads from others
                if shares.len() > readcap.k as usize {
                    let refs: Vec<(usize, &[u8])> = std::iter::once((0, bad.as_slice()))
                        .chain(shares[1..].iter().map(|(n, d)| (*n, d.as_slice())))
                        .collect();
                    let got = read_chk(&readcap, &refs).unwrap();
                    assert_eq!(got.plaintext, b64(&v["plaintext"]));
                    assert_eq!(got.rejected.len(), 1);
                }
            }
        }
        // Fields Tahoe's readers ignore: block size, data size, plaintext
        // hash tree offset, and the plaintext hash tree itself.
        let w = if h.version == 1 { 4 } else { 8 };
        let ignored = [4, 4 + w, 4 + 3 * w, h.plaintext_hash_tree as usize];
        for at in ignored {
            let mut bad = shares[0].1.clone();
            bad[at] ^= 0x01;
            assert_eq!(
                verify_chk_share(&verifycap, 0, &bad).0,
                Verdict::Good,
                "{name}: ignored byte {at}"
            );
        }
        // any other header byte makes the share unusable
        for at in [
            0usize,
            3,
            4 + 2 * w + w - 1,
            4 + 4 * w + w - 1,
            4 + 7 * w + w - 1,
        ] {
            let mut bad = shares[0].1.clone();
            bad[at] ^= 0x01;
            assert!(
                !verify_chk_share(&verifycap, 0, &bad).0.is_good(),
                "{name}: header byte {at}"
            );
        }
        // the wrong share number
        assert!(!verify_chk_share(&verifycap, 1, &shares[0].1).0.is_good() || shares.len() == 1);
    }
}

fn mutable_vectors() -> Vec<Value> {
    load("mutable.json").as_array().unwrap().clone()
}

#[test]
fn mutable_headers_parse_as_tahoe_reads_them() {
    for v in mutable_vectors() {
        let name = v["name"].as_str().unwrap();
        let l = &v["layout"];
        for (_, data) in shares(&v) {
            let h = MutableHeader::parse(&data).unwrap();
            assert_eq!(h.seqnum, l["seqnum"].as_u64().unwrap(), "{name}");
            assert_eq!(h.root_hash, hex32(&l["root_hash"]));
            assert_eq!(
                (h.k as u64, h.n as u64),
                (l["k"].as_u64().unwrap(), l["n"].as_u64().unwrap())
            );
            assert_eq!(
                (h.segment_size, h.data_length),
                (
                    l["segsize"].as_u64().unwrap(),
                    l["datalen"].as_u64().unwrap()
                )
            );
            if let Some(iv) = h.iv {
                assert_eq!(iv.to_vec(), hex(&l["salt"]));
            }
            let parts = &l["parts"];
            let r = |k: &str| {
                let x = range(&parts[k]);
                x.start as u64..x.end as u64
            };
            assert_eq!(h.regions.verification_key, r("verification_key"), "{name}");
            assert_eq!(h.regions.signature, r("signature"));
            assert_eq!(h.regions.share_hash_chain, r("share_hash_chain"));
            assert_eq!(h.regions.block_hash_tree, r("block_hash_tree"));
            assert_eq!(h.regions.share_data, r("share_data"));
            assert_eq!(h.regions.enc_privkey, r("enc_privkey"));
            assert_eq!(h.signed_prefix.len(), range(&parts["signed_prefix"]).end);
        }
    }
}

#[test]
fn mutable_shares_verify_and_decode_to_the_file() {
    for v in mutable_vectors() {
        let name = v["name"].as_str().unwrap();
        let shares = shares(&v);
        let plaintext = b64(&v["plaintext"]);
        let caps: Vec<MutableCap> = ["writecap", "readcap", "verifycap"]
            .iter()
            .map(|k| mutable_cap(&v, k))
            .collect();
        assert!(
            caps[0].writekey.is_some() && caps[1].writekey.is_none() && caps[2].readkey.is_none()
        );
        for (shnum, data) in &shares {
            for cap in &caps {
                assert_eq!(
                    verify_mutable_share(cap, *shnum, data).0,
                    Verdict::Good,
                    "{name} share {shnum}"
                );
            }
            let mut sv = ShareVerifier::mutable(&caps[2], *shnum, data.len() as u64, small_reads());
            let run = drive(&mut sv, data);
            assert_eq!(
                run.verdict,
                Verdict::Good,
                "{name} share {shnum}, small reads"
            );
            let mut owned =
                ShareVerifier::mutable(&caps[2], *shnum, data.len() as u64, small_reads());
            let (orun, most) = drive_owned(&mut owned, data);
            assert_eq!((&orun.verdict, &orun.reads), (&run.verdict, &run.reads));
            let largest = run.reads.iter().map(|r| r.end - r.start).max().unwrap();
            assert!(most as u64 <= 2 * largest, "{name}: {most}");
            let mut whole = ShareVerifier::mutable(
                &caps[2],
                *shnum,
                data.len() as u64,
                VerifyOptions::default(),
            );
            assert_eq!(
                drive(&mut whole, data).reads.len(),
                1,
                "{name}: one read for a small share"
            );
        }
        let refs: Vec<(usize, &[u8])> = shares.iter().map(|(n, d)| (*n, d.as_slice())).collect();
        for cap in &caps[..2] {
            let got = read_mutable(cap, &refs, None).unwrap();
            assert_eq!(got.plaintext, plaintext, "{name}");
            let k = got.version.as_ref().unwrap().k as usize;
            let got = read_mutable(cap, &refs[refs.len() - k..], None).unwrap();
            assert_eq!(got.plaintext, plaintext, "{name}, last {k} shares");
        }
        assert!(read_mutable(&caps[2], &refs, None).is_err());
    }
}

#[test]
fn mutable_flipped_byte_in_each_part_is_found_there() {
    for v in mutable_vectors() {
        let name = v["name"].as_str().unwrap();
        let shares = shares(&v);
        let cap = mutable_cap(&v, "verifycap");
        let readcap = mutable_cap(&v, "readcap");
        let parts = &v["layout"]["parts"];
        let h = MutableHeader::parse(&shares[0].1).unwrap();
        let p = h.params().unwrap();
        for (key, part) in [
            ("signed_prefix", SharePart::Signature),
            ("verification_key", SharePart::VerificationKey),
            ("signature", SharePart::Signature),
            ("share_hash_chain", SharePart::ShareHashChain),
            ("block_hash_tree", SharePart::BlockHashTree),
            ("share_data", SharePart::BlockData { segment: 0 }),
        ] {
            let r = range(&parts[key]);
            if r.is_empty() {
                continue; // empty files have no share data; 1-of-1 no chain
            }
            // (the version byte would make another layout: see below)
            let first = if key == "signed_prefix" { 1 } else { r.start };
            for at in [first, (r.start + r.end) / 2, r.end - 1] {
                let mut bad = shares[0].1.clone();
                bad[at] ^= 0x01;
                let want = match part {
                    SharePart::BlockData { .. } => {
                        let stride = p.block_range(1).map_or(1, |x| x.start).max(1);
                        SharePart::BlockData {
                            segment: (at as u64 - h.regions.share_data.start) / stride,
                        }
                    }
                    x => x,
                };
                let (verdict, _) = verify_mutable_share(&cap, shares[0].0, &bad);
                let Verdict::Corrupt(c) = &verdict else {
                    panic!("{name}: flip at {at} in {key} not found: {verdict:?}");
                };
                assert_eq!(c.part, want, "{name}: flip at {at} in {key}: {c}");
                // (each check verifies RSA signatures: slow in debug builds)
                if at != (r.start + r.end) / 2 {
                    continue;
                }
                let mut sv =
                    ShareVerifier::mutable(&cap, shares[0].0, bad.len() as u64, small_reads());
                assert_eq!(drive(&mut sv, &bad).verdict, verdict, "{name}: streaming");
                let k = h.k as usize;
                if shares.len() > k {
                    let refs: Vec<(usize, &[u8])> = std::iter::once((shares[0].0, bad.as_slice()))
                        .chain(shares[1..].iter().map(|(n, d)| (*n, d.as_slice())))
                        .collect();
                    let got = read_mutable(&readcap, &refs, None).unwrap();
                    assert_eq!(got.plaintext, b64(&v["plaintext"]), "{name}");
                    // A share whose signed header was changed claims another
                    // version, which is only verified if it claims to be newer.
                    let rejected = got.rejected.iter().map(|r| r.0).collect::<Vec<_>>();
                    if key == "signed_prefix" {
                        assert!(rejected.len() <= 1, "{name}");
                    } else {
                        assert_eq!(rejected, vec![shares[0].0], "{name}: {key}");
                    }
                }
            }
        }
        // The encrypted private key is not something a verifier checks.
        let r = range(&parts["enc_privkey"]);
        let mut bad = shares[0].1.clone();
        bad[(r.start + r.end) / 2] ^= 0x01;
        assert_eq!(
            verify_mutable_share(&cap, shares[0].0, &bad).0,
            Verdict::Good,
            "{name}"
        );
        // A version byte of 2 is an incompatible share, not a corrupt one.
        let mut bad = shares[0].1.clone();
        bad[0] = 2;
        assert!(matches!(
            verify_mutable_share(&cap, shares[0].0, &bad).0,
            Verdict::Incompatible(_)
        ));
        // Another file's cap: the key does not match the fingerprint.
        let other = mutable_vectors()
            .into_iter()
            .find(|o| o["name"] != v["name"])
            .unwrap();
        let other_cap = mutable_cap(&other, "verifycap");
        let Verdict::Corrupt(c) = verify_mutable_share(&other_cap, shares[0].0, &shares[0].1).0
        else {
            panic!("{name}: foreign share accepted");
        };
        assert_eq!(c.part, SharePart::VerificationKey);
    }
}

#[test]
fn rw_caps_encrypt_as_dirnode_py() {
    let v = load("dirnode.json");
    for c in v["rw_uri_encryptions"].as_array().unwrap() {
        let wk: [u8; 16] = hex(&c["writekey"]).try_into().unwrap();
        let rw = c["rw_uri"].as_str().unwrap().as_bytes();
        let enc = hex(&c["encrypted"]);
        assert_eq!(dirnode::encrypt_rw_uri(&wk, rw), enc);
        assert_eq!(dirnode::decrypt_rw_uri(&wk, &enc), rw);
    }
}

/// (name, read cap, write cap, metadata JSON) of a stored child.
type Stored = (String, Option<Vec<u8>>, Option<Vec<u8>>, Vec<u8>);

fn stored(entries: &[dirnode::DirEntry]) -> Vec<Stored> {
    entries
        .iter()
        .map(|e| {
            (
                e.name.clone(),
                e.ro_uri.clone(),
                e.rw_uri.clone(),
                e.metadata_json.clone(),
            )
        })
        .collect()
}

fn entries_of(v: &Value) -> Vec<Stored> {
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let opt = |k: &str| {
                Some(e[k].as_str().unwrap().as_bytes().to_vec()).filter(|x| !x.is_empty())
            };
            (
                e["name"].as_str().unwrap().to_string(),
                opt("ro_uri"),
                opt("rw_uri"),
                e["metadata_json"].as_str().unwrap().as_bytes().to_vec(),
            )
        })
        .collect()
}

#[test]
fn directory_contents_unpack_and_pack_as_dirnode_py() {
    let v = load("dirnode.json");
    for pk in v["packings"].as_array().unwrap() {
        let label = pk["label"].as_str().unwrap();
        let packed = b64(&pk["packed"]);
        let wk: Option<[u8; 16]> = match &pk["writekey"] {
            Value::Null => None,
            x => Some(hex(x).try_into().unwrap()),
        };
        let mutable = !pk["deep_immutable"].as_bool().unwrap();
        let got = dirnode::unpack(&packed, mutable, wk.as_ref()).unwrap();
        let want = entries_of(pk);
        assert_eq!(stored(&got), want, "{label}");
        for e in &got {
            let parsed: serde_json::Map<String, Value> =
                serde_json::from_slice(&e.metadata_json).unwrap();
            assert_eq!(e.metadata, parsed);
        }
        if label != "NFD name" {
            let pe: Vec<PackEntry> = want
                .iter()
                .map(|(n, ro, rw, m)| PackEntry {
                    name: n,
                    ro_uri: ro.as_deref().unwrap_or(b""),
                    rw_uri: rw.as_deref().unwrap_or(b""),
                    metadata_json: m,
                })
                .collect();
            assert_eq!(
                dirnode::pack(&pe, wk.as_ref()),
                packed,
                "{label}: pack gives Tahoe's bytes"
            );
        }
    }
}

#[test]
fn directories_read_from_their_shares() {
    let v = load("dirnode.json");
    let mut kinds = Vec::new();
    for d in v["directories"].as_array().unwrap() {
        let label = d["label"].as_str().unwrap();
        let shares = shares(d);
        let refs: Vec<(usize, &[u8])> = shares.iter().map(|(n, b)| (*n, b.as_slice())).collect();
        let want = entries_of(d);
        let mut caps = vec![(d["readcap"].as_str().unwrap(), false)];
        if let Some(w) = d["writecap"].as_str() {
            caps.push((w, true));
        }
        for (cap, write) in caps {
            let cap = Cap::parse(cap).unwrap();
            kinds.push(cap.kind());
            let dir = read_directory(&cap, &refs, None).unwrap();
            let got = stored(&dir.entries);
            let want: Vec<_> = want
                .iter()
                .map(|(n, ro, rw, m)| {
                    (
                        n.clone(),
                        ro.clone(),
                        if write { rw.clone() } else { None },
                        m.clone(),
                    )
                })
                .collect();
            assert_eq!(got, want, "{label} with {}", cap.kind());
            if let Some(listed) = d.get("listed").and_then(Value::as_array) {
                let names: Vec<&str> = listed.iter().map(|x| x.as_str().unwrap()).collect();
                let shown: Vec<&str> = dir.children().map(|(e, _)| e.name.as_str()).collect();
                assert_eq!(shown, names, "{label}: the children Tahoe lists");
            }
            assert!(dir.rejected.is_empty());
            // one corrupt share: still listed from the others, and reported
            if shares.len() > 1 {
                let mut bad = shares[0].1.clone();
                let mid = bad.len() / 2;
                bad[mid] ^= 0x40;
                let mut r2 = refs.clone();
                r2[0].1 = &bad;
                let dir2 = read_directory(&cap, &r2, None).unwrap();
                assert_eq!(dir2.entries, dir.entries, "{label}");
                assert_eq!(dir2.rejected.len(), 1, "{label}");
                assert_eq!(dir2.rejected[0].0, shares[0].0);
            }
        }
    }
    use steward_cap::CapKind::*;
    for k in [Dir2, Dir2Ro, Dir2Mdmf, Dir2MdmfRo, Dir2Chk, Dir2Lit] {
        assert!(kinds.contains(&k), "{k:?} directories are covered");
    }
}

/// What Tahoe's node layer lists for stored children, odd ones included
/// (unknown caps, prefixes, malformed caps, mutable children of immutable
/// directories, write caps in the read cap slot).
#[test]
fn child_caps_match_tahoes_node_layer() {
    let v = load("dirnode.json");
    let cases = v["children"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for c in cases {
        let label = c["label"].as_str().unwrap();
        let mutable = c["mutable"].as_bool().unwrap();
        let wk: Option<[u8; 16]> = match &c["writekey"] {
            Value::Null => None,
            x => Some(hex(x).try_into().unwrap()),
        };
        let entries = dirnode::unpack(&b64(&c["packed"]), mutable, wk.as_ref()).unwrap();
        let listed = c["listed"].as_object().unwrap();
        let mut shown = 0;
        for e in &entries {
            let got = dirnode::child_caps(e, mutable);
            let Some(want) = listed.get(&e.name) else {
                assert_eq!(got, None, "{label}: Tahoe drops {:?}", e.name);
                continue;
            };
            shown += 1;
            let got =
                got.unwrap_or_else(|| panic!("{label}: {:?} dropped, Tahoe lists it", e.name));
            let s = |x: &Value| x.as_str().map(|s| s.as_bytes().to_vec());
            assert_eq!(got.rw_uri, s(&want["rw_uri"]), "{label}: {} rw", e.name);
            assert_eq!(got.ro_uri, s(&want["ro_uri"]), "{label}: {} ro", e.name);
            assert_eq!(
                got.cap.is_none(),
                want["unknown"].as_bool().unwrap(),
                "{label}: {}",
                e.name
            );
        }
        assert_eq!(shown, listed.len(), "{label}");
        assert!(shown < entries.len(), "{label}: some children are dropped");
    }
}

/// Signatures Tahoe's RSA code made with keys of 1024 (checked by the `rsa`
/// crate), 2048 and 4096 bits (checked by ring).
#[test]
fn rsa_pss_signatures_match_tahoe() {
    for c in load("rsa.json").as_array().unwrap() {
        let bits = c["bits"].as_u64().unwrap();
        let (key, prefix, sig) = (hex(&c["pubkey"]), hex(&c["prefix"]), hex(&c["signature"]));
        assert_eq!(
            mutable::verify_signature(&key, &sig, &prefix),
            Ok(()),
            "{bits} bits"
        );
        let mut other = prefix.clone();
        other[0] ^= 1;
        assert!(
            mutable::verify_signature(&key, &sig, &other).is_err(),
            "{bits} bits"
        );
        let mut bad = sig.clone();
        bad[10] ^= 1;
        assert!(
            mutable::verify_signature(&key, &bad, &prefix).is_err(),
            "{bits} bits"
        );
        assert!(
            mutable::verify_signature(&key, &sig[1..], &prefix).is_err(),
            "{bits} bits"
        );
        assert!(
            mutable::verify_signature(&key[1..], &sig, &prefix).is_err(),
            "{bits} bits"
        );
    }
}

/// Shares of two versions of one file (published, then overwritten): the
/// newest version with k good shares is read, or the one asked for.
#[test]
fn the_best_recoverable_version_is_read() {
    let v = load("versions.json");
    let cap = mutable_cap(&v, "readcap");
    let (old, new) = (shares(&v["old"]), shares(&v["new"]));
    let (old_text, new_text) = (b64(&v["old"]["plaintext"]), b64(&v["new"]["plaintext"]));
    let old_h = MutableHeader::parse(&old[0].1).unwrap();
    let new_h = MutableHeader::parse(&new[0].1).unwrap();
    assert!(new_h.seqnum > old_h.seqnum);
    let k = new_h.k as usize;
    let mix = |n_new: usize| -> Vec<(usize, &[u8])> {
        let mut v: Vec<(usize, &[u8])> = old.iter().map(|(n, d)| (*n, d.as_slice())).collect();
        v.extend(new[..n_new].iter().map(|(n, d)| (*n, d.as_slice())));
        v
    };
    let got = read_mutable(&cap, &mix(k), None).unwrap();
    assert_eq!(got.plaintext, new_text);
    assert_eq!(got.version.unwrap().seqnum, new_h.seqnum);
    // too few shares of the new version: the old one is the best recoverable
    let got = read_mutable(&cap, &mix(k - 1), None).unwrap();
    assert_eq!(got.plaintext, old_text);
    // asked for by (seqnum, root hash)
    let got = read_mutable(&cap, &mix(k), Some((old_h.seqnum, old_h.root_hash))).unwrap();
    assert_eq!(got.plaintext, old_text);
    let missing = read_mutable(&cap, &mix(k), Some((old_h.seqnum + 7, old_h.root_hash)));
    assert!(missing.is_err());
    let err = read_mutable(
        &cap,
        &new[..k - 1]
            .iter()
            .map(|(n, d)| (*n, d.as_slice()))
            .collect::<Vec<_>>(),
        None,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("only {} good shares of the {k} needed", k - 1)),
        "{err}"
    );
}
