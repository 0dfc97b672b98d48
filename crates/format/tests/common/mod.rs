//! Loading the vectors `vectors/generate.py` wrote with Tahoe's own code,
//! and driving verifiers the way a network client would.
#![allow(dead_code)]

use data_encoding::{BASE64, HEXLOWER};
use serde_json::Value;
use std::ops::Range;
use steward_cap::Cap;
use steward_format::chk::ChkCap;
use steward_format::mutable::MutableCap;
use steward_format::verify::{ShareVerifier, Step, Verdict, VerifyOptions};

pub fn load(name: &str) -> Value {
    let path = format!("{}/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

pub fn hex(v: &Value) -> Vec<u8> {
    HEXLOWER.decode(v.as_str().unwrap().as_bytes()).unwrap()
}

pub fn hex32(v: &Value) -> [u8; 32] {
    hex(v).try_into().unwrap()
}

pub fn b64(v: &Value) -> Vec<u8> {
    BASE64.decode(v.as_str().unwrap().as_bytes()).unwrap()
}

/// `(share number, bytes)` of a vector's `shares` object, sorted.
pub fn shares(v: &Value) -> Vec<(usize, Vec<u8>)> {
    let mut out: Vec<(usize, Vec<u8>)> = v["shares"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, s)| (k.parse().unwrap(), b64(s)))
        .collect();
    out.sort();
    out
}

/// The CHK cap a vector names under `key`.
pub fn chk_cap(v: &Value, key: &str) -> ChkCap {
    ChkCap::from_cap(&Cap::parse(v[key].as_str().unwrap()).unwrap()).unwrap()
}

/// The mutable cap a vector names under `key`.
pub fn mutable_cap(v: &Value, key: &str) -> MutableCap {
    MutableCap::from_cap(&Cap::parse(v[key].as_str().unwrap()).unwrap()).unwrap()
}

pub fn range(v: &Value) -> Range<usize> {
    let a = v.as_array().unwrap();
    a[0].as_u64().unwrap() as usize..a[1].as_u64().unwrap() as usize
}

/// What a driver did: the verdict, and the reads it made.
pub struct Run {
    pub verdict: Verdict,
    pub reads: Vec<Range<u64>>,
}

/// Drives `v` like a client of a storage server that holds `share` and
/// answers as GBS does (a range past the end gives a short body).
pub fn drive(v: &mut ShareVerifier, share: &[u8]) -> Run {
    drive_with(v, share, |v, start, bytes| v.supply(start, bytes))
}

/// As [`drive`], reading each step into the verifier's own buffer
/// ([`ShareVerifier::take_buffer`], [`ShareVerifier::supply_owned`]), as
/// the native backend does; also returns the largest capacity that
/// buffer ever had, to show that it is reused rather than grown.
#[allow(dead_code)] // not every test binary uses it
pub fn drive_owned(v: &mut ShareVerifier, share: &[u8]) -> (Run, usize) {
    let mut most = 0;
    let run = drive_with(v, share, |v, start, bytes| {
        let mut buf = v.take_buffer();
        assert!(buf.is_empty());
        buf.reserve(bytes.len());
        buf.extend_from_slice(bytes);
        most = most.max(buf.capacity());
        v.supply_owned(start, buf);
    });
    (run, most)
}

/// Runs `v` to its verdict, answering each read from `share` (cut short
/// at its end) with `supply`.
fn drive_with(
    v: &mut ShareVerifier,
    share: &[u8],
    mut supply: impl FnMut(&mut ShareVerifier, u64, &[u8]),
) -> Run {
    let mut reads = Vec::new();
    loop {
        match v.next_step() {
            Step::Read(r) => {
                assert!(reads.len() < 100_000, "a verifier that never ends");
                reads.push(r.clone());
                let start = (r.start as usize).min(share.len());
                let end = (r.end as usize).min(share.len());
                supply(v, r.start, &share[start..end]);
            }
            Step::Done(verdict) => return Run { verdict, reads },
        }
    }
}

/// Options that make a verifier read in many small pieces.
pub fn small_reads() -> VerifyOptions {
    VerifyOptions {
        max_read: 100,
        whole_share_up_to: 0,
    }
}
