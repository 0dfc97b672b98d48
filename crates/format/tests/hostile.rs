//! Hostile storage servers: shares with random damage, garbage, wrong
//! lengths and offsets, replies shorter than asked, sizes that lie. The
//! verifiers and readers must end with a verdict or an error, never panic,
//! and never allocate more than the bytes a server actually sent justify,
//! whatever lengths those bytes claim. A counting allocator measures that.

mod common;

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use steward_cap::Cap;
use steward_format::chk::ChkCap;
use steward_format::directory::read_directory;
use steward_format::mutable::MutableCap;
use steward_format::read::{read_chk, read_mutable};
use steward_format::uri_extension::UriExtension;
use steward_format::verify::{ShareVerifier, Step, VerifyOptions};
use steward_format::{dirnode, zfec};

struct Counting;

thread_local! {
    static TRACK: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note_alloc(size: usize) {
    let _ = TRACK.try_with(|t| {
        if t.get() {
            LIVE.with(|l| {
                let now = l.get() + size;
                l.set(now);
                PEAK.with(|p| p.set(p.get().max(now)));
            });
            LARGEST.with(|m| m.set(m.get().max(size)));
        }
    });
}

fn note_free(size: usize) {
    let _ = TRACK.try_with(|t| {
        if t.get() {
            LIVE.with(|l| l.set(l.get().saturating_sub(size)));
        }
    });
}

// SAFETY: forwards to the system allocator; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note_free(layout.size());
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_free(layout.size());
        note_alloc(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` and returns its result with (peak live bytes, largest single
/// allocation) on this thread while it ran.
fn measured<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    LARGEST.with(|m| m.set(0));
    TRACK.with(|t| t.set(true));
    let out = f();
    TRACK.with(|t| t.set(false));
    (out, PEAK.with(Cell::get), LARGEST.with(Cell::get))
}

/// How a hostile server answers a range request.
#[derive(Clone, Copy, Debug)]
enum Server {
    /// As GBS does: the bytes asked for, short at the end of the share.
    Honest,
    /// Half of what was asked.
    Short,
}

/// Drives `v` against a server holding `share` and returns the number of
/// steps taken.
fn run(mut v: ShareVerifier, share: &[u8], server: Server) -> usize {
    for steps in 1.. {
        match v.next_step() {
            Step::Done(_) => return steps,
            Step::Read(r) => {
                assert!(r.start <= r.end, "backwards read {r:?}");
                assert!(steps < 10_000, "a verifier that never ends");
                let start = (r.start as usize).min(share.len());
                let mut end = (r.end as usize).min(share.len());
                if let Server::Short = server {
                    end = start + (end - start) / 2;
                }
                v.supply(r.start, &share[start..end]);
            }
        }
    }
    unreachable!()
}

/// Damages a share: flips, random runs, truncation, extension, or an
/// offset field of the header set to something absurd.
fn damage(rng: &mut StdRng, share: &[u8]) -> Vec<u8> {
    let mut s = share.to_vec();
    match rng.gen_range(0..6) {
        0 => {
            for _ in 0..rng.gen_range(1..4) {
                if !s.is_empty() {
                    let at = rng.gen_range(0..s.len());
                    s[at] ^= 1 << rng.gen_range(0..8);
                }
            }
        }
        1 => {
            let at = rng.gen_range(0..s.len());
            let end = (at + rng.gen_range(1..64)).min(s.len());
            rng.fill(&mut s[at..end]);
        }
        2 => s.truncate(rng.gen_range(0..s.len())),
        3 => s.extend((0..rng.gen_range(1..3000)).map(|_| rng.gen::<u8>())),
        _ => {
            // one header word (4 or 8 bytes) somewhere in the first 123
            let width = if rng.gen_bool(0.5) { 4 } else { 8 };
            let at = rng
                .gen_range(1..123 - width)
                .min(s.len().saturating_sub(width));
            let value: u64 = match rng.gen_range(0..4) {
                0 => u64::MAX,
                1 => u32::MAX as u64,
                2 => rng.gen_range(0..(s.len() as u64 * 2 + 1)),
                _ => rng.gen(),
            };
            let bytes = value.to_be_bytes();
            if s.len() >= at + width {
                s[at..at + width].copy_from_slice(&bytes[8 - width..]);
            }
        }
    }
    s
}

fn options(rng: &mut StdRng) -> VerifyOptions {
    match rng.gen_range(0..3) {
        0 => VerifyOptions::default(),
        1 => small_reads(),
        _ => VerifyOptions {
            max_read: rng.gen_range(1..5000),
            whole_share_up_to: rng.gen_range(0..5000),
        },
    }
}

/// The allocation bounds: a single allocation never much beyond the bytes
/// the server sent, and not many times that in all.
fn check_bounds(what: &str, sent: usize, peak: usize, largest: usize) {
    let slack = 64 << 10;
    assert!(
        largest <= sent + sent / 4 + slack,
        "{what}: one allocation of {largest} bytes for a {sent}-byte share"
    );
    assert!(
        peak <= 8 * sent + 4 * slack,
        "{what}: {peak} bytes live for a {sent}-byte share"
    );
}

/// `rounds` times: damages a random share of `v`, verifies it against a
/// server that may send short replies or lie about the size, checks the
/// allocations, and (sometimes) reads the object with it among good shares.
fn hostile_rounds(
    what: &str,
    v: &serde_json::Value,
    seed: u64,
    rounds: usize,
    verifier: impl Fn(usize, u64, VerifyOptions) -> ShareVerifier,
    read: impl Fn(&[(usize, &[u8])]),
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let shares = shares(v);
    for _ in 0..rounds {
        let (shnum, good) = &shares[rng.gen_range(0..shares.len())];
        let bad = damage(&mut rng, good);
        let opts = options(&mut rng);
        let server = if rng.gen_bool(0.2) {
            Server::Short
        } else {
            Server::Honest
        };
        let claimed = match rng.gen_range(0..6) {
            0 => bad.len() as u64 * 1000,
            1 => u64::MAX / 2,
            _ => bad.len() as u64,
        };
        let (_, peak, largest) = measured(|| run(verifier(*shnum, claimed, opts), &bad, server));
        check_bounds(what, bad.len(), peak, largest);
        if rng.gen_bool(0.25) {
            let refs: Vec<(usize, &[u8])> = shares
                .iter()
                .map(|(n, d)| (*n, if n == shnum { &bad[..] } else { &d[..] }))
                .collect();
            read(&refs);
        }
    }
}

#[test]
fn damaged_chk_shares_never_panic_nor_overallocate() {
    for (i, v) in load("chk.json").as_array().unwrap().iter().enumerate() {
        let (cap, readcap) = (chk_cap(v, "verifycap"), chk_cap(v, "readcap"));
        hostile_rounds(
            "CHK verify",
            v,
            13 + i as u64,
            300,
            |shnum, size, opts| ShareVerifier::chk(&cap, shnum, size, opts),
            |refs| drop(read_chk(&readcap, refs)),
        );
    }
}

#[test]
fn damaged_mutable_shares_never_panic_nor_overallocate() {
    for (i, v) in load("mutable.json").as_array().unwrap().iter().enumerate() {
        let (cap, readcap) = (mutable_cap(v, "verifycap"), mutable_cap(v, "readcap"));
        // (each round may check RSA signatures: slow in debug builds)
        hostile_rounds(
            "mutable verify",
            v,
            17 + i as u64,
            40,
            |shnum, size, opts| ShareVerifier::mutable(&cap, shnum, size, opts),
            |refs| drop(read_mutable(&readcap, refs, None)),
        );
    }
}

#[test]
fn garbage_shares_are_verdicts() {
    let mut rng = StdRng::seed_from_u64(19);
    let chk = load("chk.json");
    let cap =
        ChkCap::from_cap(&Cap::parse(chk[0]["verifycap"].as_str().unwrap()).unwrap()).unwrap();
    let muts = load("mutable.json");
    let mcap =
        MutableCap::from_cap(&Cap::parse(muts[0]["verifycap"].as_str().unwrap()).unwrap()).unwrap();
    for i in 0..2000 {
        let len = rng.gen_range(0..3000);
        let mut g: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        // a plausible version makes the parsers go further
        if len >= 4 && rng.gen_bool(0.7) {
            g[..4].copy_from_slice(&[0, 0, 0, rng.gen_range(1..3)]);
        }
        let (_, peak, largest) = measured(|| {
            run(
                ShareVerifier::chk(&cap, i % 10, len as u64, options(&mut rng)),
                &g,
                Server::Honest,
            )
        });
        check_bounds("CHK garbage", len, peak, largest);
        if len >= 1 && rng.gen_bool(0.7) {
            g[0] = rng.gen_range(0..2);
        }
        let (_, peak, largest) = measured(|| {
            run(
                ShareVerifier::mutable(&mcap, i % 5, len as u64, options(&mut rng)),
                &g,
                Server::Honest,
            )
        });
        check_bounds("mutable garbage", len, peak, largest);
        // the other parsers
        let _ = UriExtension::parse(&g);
        let _ = dirnode::unpack(&g, true, Some(&[7; 16]));
        let _ = dirnode::unpack(&g, false, None);
        let _ = steward_format::mutable::MutableHeader::parse(&g);
        let _ = steward_format::chk::ChkHeader::parse(&g);
        if let Ok(fec) = zfec::Fec::new(rng.gen_range(1..5), rng.gen_range(1..9)) {
            let blocks: Vec<(usize, &[u8])> = (0..rng.gen_range(0..6))
                .map(|_| (rng.gen_range(0..10), &g[..g.len().min(rng.gen_range(0..4))]))
                .collect();
            let _ = fec.decode(&blocks);
        }
    }
}

#[test]
fn directories_with_damaged_or_missing_shares_are_errors_or_listings() {
    let mut rng = StdRng::seed_from_u64(23);
    let v = load("dirnode.json");
    for d in v["directories"].as_array().unwrap() {
        let shares = shares(d);
        if shares.is_empty() {
            continue;
        }
        let cap = Cap::parse(d["readcap"].as_str().unwrap()).unwrap();
        for _ in 0..8 {
            let mut damaged: Vec<(usize, Vec<u8>)> = Vec::new();
            for (n, s) in &shares {
                if rng.gen_bool(0.8) {
                    let s = if rng.gen_bool(0.5) {
                        damage(&mut rng, s)
                    } else {
                        s.clone()
                    };
                    damaged.push((*n, s));
                }
            }
            let refs: Vec<(usize, &[u8])> =
                damaged.iter().map(|(n, s)| (*n, s.as_slice())).collect();
            match read_directory(&cap, &refs, None) {
                Ok(dir) => assert!(dir.used.len() + dir.rejected.len() <= refs.len()),
                Err(e) => assert!(!e.to_string().is_empty()),
            }
        }
    }
}
