//! Instructions counted by valgrind's callgrind, split by where they go.
//!
//! Wall and CPU time per object vary several-fold between hosts of the same
//! kind (CPU model and clock, turbo and frequency scaling, neighbours on a
//! shared host, cache sizes, how often the kernel migrates the process);
//! the number of instructions a run executes does not. Callgrind runs the
//! program on a synthetic CPU and counts every user-space instruction it
//! executes (`Ir`), the same on any x86-64 host for the same binary, inputs
//! and libraries; only the order in which threads happen to run and the
//! answers' timing move it, by a percent or two between runs. It is about
//! 50 times slower than the program itself, so it measures small runs.
//! Code that picks an implementation by CPU feature at run time sees
//! valgrind's synthetic CPU, the same everywhere: it offers AVX2 (glibc's
//! `memcpy` takes its AVX path) but not the SHA extensions, so `sha2`
//! runs its portable code under callgrind, several times the instructions
//! of the SHA-NI path it takes natively on a CPU that has them.
//!
//! [`run`] runs a command under callgrind and [`parse`] reads the output
//! file into a [`Count`]: the total, each function's own (exclusive) cost,
//! and the split into [`GROUPS`]:
//!
//! * **allocation**: the allocator itself, whoever calls it: glibc's
//!   `malloc`, `free`, `realloc`, `calloc` and their internals (`_int_*`,
//!   `malloc_consolidate`, `unlink_chunk`, `tcache_*`, ...), Rust's
//!   `__rust_alloc`/`__rdl_*` shims and `alloc::alloc::*`,
//!   `alloc::raw_vec::*` (growing a `Vec`), and the functions of the
//!   mimalloc, jemalloc and snmalloc crates (`mi_*`, `_rjem_*`/`je_*`,
//!   `sn_rust_*`: jemalloc's internal functions are not all told apart);
//! * **JSON**: functions of `serde_json`, `serde`, `indexmap` (the object
//!   map `serde_json` uses with `preserve_order`), `ryu`, `itoa`;
//! * **HTTP**: `hyper`, `hyper_util`, `reqwest`, `h2`, `http`,
//!   `http_body`, `httparse`, `url`, `idna`, `percent_encoding`,
//!   `form_urlencoded`, `tower*`, `want`, `bytes`, `tokio::net`, `mio`,
//!   `socket2`, `rustls`;
//! * **steward**: steward's own crates (`steward*`), and `sha2` and
//!   `data_encoding`, which only its cap code calls (hashing and base32);
//! * **async runtime**: the rest of `tokio`, `futures*`, `async_trait`,
//!   `parking_lot`;
//! * **rest**: everything else that is named (start-up in `ld.so`, `clap`,
//!   `indicatif`, `tracing`, SQLite, libc outside the allocator).
//!
//! A function belongs to the first group whose crate its demangled name
//! names (so `drop_in_place<serde_json::value::Value>` is JSON). Generic
//! code of the standard library (`core::`, `alloc::`, `std::`,
//! `hashbrown::`, `memcpy` and the other `mem*`/`str*` routines of libc)
//! does work for whoever calls it: its own cost goes to its callers'
//! groups, in proportion to what each call cost (callgrind's call edges),
//! climbing until a caller has a group (a recursion is not followed).
//! So the SipHash of `serde_json`'s maps is JSON, the `from_utf8` inside
//! URL parsing is HTTP, and a `format!` in steward's code is steward's.

use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};

/// The groups of a [`Count`], in report order.
pub const GROUPS: [&str; 6] = [
    "steward",
    "HTTP",
    "JSON",
    "allocation",
    "async runtime",
    "rest",
];

/// What a callgrind run counted (or a difference of two, or a share per
/// object: see [`Count::minus`] and [`Count::per`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Count {
    /// Instructions executed (callgrind's `Ir`), all threads.
    pub total: f64,
    /// Instructions per group, indexed as [`GROUPS`]; they add up to
    /// `total`.
    pub groups: [f64; GROUPS.len()],
    /// Each function's own instructions (not those of what it calls), by
    /// demangled name.
    pub functions: BTreeMap<String, f64>,
}

impl Count {
    /// Instructions of `group` (one of [`GROUPS`]).
    pub fn group(&self, group: &str) -> f64 {
        GROUPS
            .iter()
            .position(|g| *g == group)
            .map(|i| self.groups[i])
            .unwrap_or(0.0)
    }

    /// `self - base`, group by group and function by function: the cost of
    /// what a larger run did beyond a smaller one (its start-up taken out).
    pub fn minus(&self, base: &Count) -> Count {
        let mut functions = self.functions.clone();
        for (f, v) in &base.functions {
            *functions.entry(f.clone()).or_default() -= v;
        }
        let mut groups = self.groups;
        for (g, b) in groups.iter_mut().zip(base.groups) {
            *g -= b;
        }
        Count {
            total: self.total - base.total,
            groups,
            functions,
        }
    }

    /// Every figure divided by `n` (objects).
    pub fn per(&self, n: f64) -> Count {
        Count {
            total: self.total / n,
            groups: self.groups.map(|g| g / n),
            functions: self
                .functions
                .iter()
                .map(|(f, v)| (f.clone(), v / n))
                .collect(),
        }
    }

    /// The `n` functions with the most own instructions, most first.
    pub fn top(&self, n: usize) -> Vec<(f64, &str)> {
        let mut all: Vec<(f64, &str)> = self
            .functions
            .iter()
            .map(|(f, v)| (*v, f.as_str()))
            .collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
        all.truncate(n);
        all
    }
}

/// Fails with one line naming the package to install when `valgrind` cannot
/// be run.
pub fn require_valgrind() -> Result<()> {
    match Command::new("valgrind").arg("--version").output() {
        Ok(o) if o.status.success() => Ok(()),
        _ => bail!(
            "valgrind is not installed (or not on PATH): install the `valgrind` package (Debian/Ubuntu: apt-get install valgrind)"
        ),
    }
}

/// Runs `program args` under callgrind (standard output discarded),
/// writing its profile to `out`, and reads the profile. Fails if the
/// program fails.
pub fn run(program: &Path, args: &[&str], out: &Path) -> Result<Count> {
    require_valgrind()?;
    let mut cmd = Command::new("valgrind");
    cmd.arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    run_command(cmd, out)
}

/// Runs `cmd` (already `valgrind --tool=callgrind
/// --callgrind-out-file=OUT ...`) and reads `out`.
fn run_command(mut cmd: Command, out: &Path) -> Result<Count> {
    let o = cmd
        .stderr(Stdio::piped())
        .output()
        .context("running valgrind")?;
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        let tail: Vec<&str> = err.lines().rev().take(5).collect();
        bail!(
            "the program failed under callgrind ({}): {}",
            o.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        );
    }
    let text = std::fs::read_to_string(out)
        .with_context(|| format!("reading callgrind output {}", out.display()))?;
    parse(&text).with_context(|| format!("in {}", out.display()))
}

/// Reads a callgrind output file (format version 1, the `Ir` event, any
/// name compression).
pub fn parse(text: &str) -> Result<Count> {
    // Compressed names: "(id) name" defines, "(id)" refers.
    let mut fn_names: HashMap<u32, String> = HashMap::new();
    let mut ob_names: HashMap<u32, String> = HashMap::new();
    let mut fn_object: HashMap<u32, u32> = HashMap::new();
    let mut own: HashMap<u32, u64> = HashMap::new();
    let mut edges: HashMap<(u32, u32), u64> = HashMap::new();
    let mut total = None;
    let (mut cur_fn, mut cur_ob, mut call_to, mut next_is_call) = (None, 0u32, None, false);
    let mut ir_column = 1;
    for line in text.lines() {
        let Some(first) = line.bytes().next() else {
            continue;
        };
        if first.is_ascii_digit() || matches!(first, b'+' | b'-' | b'*') {
            let ir: u64 = line
                .split_ascii_whitespace()
                .nth(ir_column)
                .map(|v| v.parse().unwrap_or(0))
                .unwrap_or(0);
            if let Some(f) = cur_fn {
                if next_is_call {
                    if let Some(callee) = call_to {
                        *edges.entry((f, callee)).or_default() += ir;
                    }
                    next_is_call = false;
                } else {
                    *own.entry(f).or_default() += ir;
                }
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=').or_else(|| line.split_once(": ")) else {
            continue;
        };
        match key {
            "fn" | "cfn" => {
                let id = name_ref(value, &mut fn_names)?;
                if key == "fn" {
                    cur_fn = Some(id);
                    fn_object.insert(id, cur_ob);
                } else {
                    call_to = Some(id);
                }
            }
            "ob" => cur_ob = name_ref(value, &mut ob_names)?,
            "cob" => {
                name_ref(value, &mut ob_names)?;
            }
            "calls" => next_is_call = true,
            "positions" => ir_column = value.split_ascii_whitespace().count(),
            "events" if value.split_ascii_whitespace().next() != Some("Ir") => {
                bail!("callgrind events {value:?}: expected Ir first");
            }
            "summary" | "totals" => total = value.trim().parse::<u64>().ok(),
            _ => {}
        }
    }
    let Some(total) = total else {
        bail!("no summary line: not a finished callgrind profile");
    };
    let name = |id: u32| -> &str { fn_names.get(&id).map(String::as_str).unwrap_or("???") };
    let object = |id: u32| -> &str {
        fn_object
            .get(&id)
            .and_then(|o| ob_names.get(o))
            .map(String::as_str)
            .unwrap_or("")
    };
    let mut callers: HashMap<u32, Vec<(u32, u64)>> = HashMap::new();
    for (&(from, to), &ir) in &edges {
        if from != to && ir > 0 {
            callers.entry(to).or_default().push((from, ir));
        }
    }
    let own_group: HashMap<u32, Option<usize>> = own
        .keys()
        .chain(callers.keys())
        .chain(callers.values().flatten().map(|(c, _)| c))
        .map(|&f| (f, classify(name(f), object(f))))
        .collect();
    let mut shares = Shares {
        callers: &callers,
        own_group: &own_group,
        memo: HashMap::new(),
    };
    let mut count = Count {
        total: total as f64,
        ..Default::default()
    };
    for (&f, &ir) in &own {
        for (g, share) in shares.of(f, &mut HashSet::new()).iter().enumerate() {
            count.groups[g] += ir as f64 * share;
        }
        *count
            .functions
            .entry(clean_name(name(f)).to_string())
            .or_default() += ir as f64;
    }
    Ok(count)
}

/// Resolves a compressed name reference, `(id) name` or `(id)`; an
/// uncompressed name gets an id of its own.
fn name_ref(value: &str, names: &mut HashMap<u32, String>) -> Result<u32> {
    if let Some(rest) = value.strip_prefix('(') {
        let (id, name) = rest
            .split_once(')')
            .with_context(|| format!("bad name reference {value:?}"))?;
        let id: u32 = id
            .parse()
            .with_context(|| format!("bad name id in {value:?}"))?;
        let name = name.trim_start();
        if !name.is_empty() {
            names.insert(id, name.to_string());
        }
        Ok(id)
    } else {
        let id = u32::MAX - names.len() as u32;
        let existing = names.iter().find(|(_, n)| *n == value).map(|(i, _)| *i);
        Ok(existing.unwrap_or_else(|| {
            names.insert(id, value.to_string());
            id
        }))
    }
}

/// Callgrind's recursion suffix (`'2`) removed.
fn clean_name(name: &str) -> &str {
    match name.rsplit_once('\'') {
        Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => name,
    }
}

/// Crates by group (index into [`GROUPS`]), matched as `name::` anywhere
/// in a demangled function name; the first match wins.
const CRATES: [(usize, &[&str]); 4] = [
    (
        2,
        &[
            "serde_json::",
            "serde::",
            "serde_core::",
            "indexmap::",
            "ryu::",
            "itoa::",
        ],
    ),
    (
        1,
        &[
            "hyper::",
            "hyper_util::",
            "reqwest::",
            "h2::",
            "http::",
            "http_body",
            "httparse::",
            "url::",
            "idna::",
            "form_urlencoded::",
            "percent_encoding::",
            "tower::",
            "tower_http::",
            "tower_service::",
            "tower_layer::",
            "want::",
            "try_lock::",
            "tokio::net::",
            "mio::",
            "socket2::",
            "bytes::",
            "rustls",
        ],
    ),
    (0, &["steward", "sha2::", "data_encoding::"]),
    (
        4,
        &[
            "tokio::",
            "futures_util::",
            "futures_core::",
            "futures_channel::",
            "futures_executor::",
            "futures::",
            "async_trait",
            "parking_lot",
        ],
    ),
];

/// glibc's allocator entry points (internals: `_int_*`, `tcache_*`).
const LIBC_ALLOC: [&str; 15] = [
    "malloc",
    "free",
    "cfree",
    "realloc",
    "calloc",
    "malloc_consolidate",
    "unlink_chunk",
    "unlink_chunk.constprop.0",
    "sysmalloc",
    "arena_get2",
    "_mid_memalign",
    "_mid_memalign.constprop.0",
    "posix_memalign",
    "aligned_alloc",
    "memalign",
];

/// Prefixes of generic code that works for its caller.
const GENERIC: [&str; 11] = [
    "core::",
    "alloc::",
    "std::",
    "<core::",
    "<alloc::",
    "<std::",
    "hashbrown::",
    "<hashbrown::",
    "<&",
    "<[",
    "<T as ",
];

/// The group of function `name` (in object file `object`), or `None` for
/// generic code whose cost goes to its callers.
fn classify(name: &str, object: &str) -> Option<usize> {
    const ALLOCATION: usize = 3;
    const REST: usize = 5;
    let n = clean_name(name);
    let libc = object.contains("libc.so");
    let allocator = (libc
        && (LIBC_ALLOC.contains(&n) || n.starts_with("_int_") || n.starts_with("tcache")))
        || n.starts_with("__rustc::__rust_alloc")
        || n.starts_with("__rustc::__rust_dealloc")
        || n.starts_with("__rustc::__rust_realloc")
        || n.starts_with("__rustc::__rdl_")
        || n.starts_with("__rust_alloc")
        || n.starts_with("__rust_dealloc")
        || n.starts_with("__rust_realloc")
        || n.starts_with("__rdl_")
        || n.starts_with("alloc::alloc::")
        || n.starts_with("alloc::raw_vec::")
        || n.starts_with("<alloc::raw_vec::")
        || n.starts_with("mi_")
        || n.starts_with("_mi_")
        || n.contains("mimalloc")
        || n.contains("jemalloc")
        || n.starts_with("je_")
        || n.starts_with("_rjem_")
        || n.contains("snmalloc")
        || n.starts_with("sn_rust_");
    if allocator {
        return Some(ALLOCATION);
    }
    for (g, crates) in CRATES {
        if crates.iter().any(|c| n.contains(c)) {
            return Some(g);
        }
    }
    let libc_routine = ["__mem", "__str", "__wmem", "__stp", "mem", "str", "bcmp"]
        .iter()
        .any(|p| n.starts_with(p));
    if GENERIC.iter().any(|p| n.starts_with(p)) || (libc && libc_routine) {
        return None;
    }
    Some(REST)
}

/// How a function's own cost divides between the groups.
struct Shares<'a> {
    callers: &'a HashMap<u32, Vec<(u32, u64)>>,
    own_group: &'a HashMap<u32, Option<usize>>,
    memo: HashMap<u32, [f64; GROUPS.len()]>,
}

impl Shares<'_> {
    fn of(&mut self, f: u32, path: &mut HashSet<u32>) -> [f64; GROUPS.len()] {
        if let Some(s) = self.memo.get(&f) {
            return *s;
        }
        let mut s = [0.0; GROUPS.len()];
        match self.own_group.get(&f).copied().flatten() {
            Some(g) => s[g] = 1.0,
            None => {
                let callers: Vec<(u32, u64)> = self
                    .callers
                    .get(&f)
                    .map(|cs| {
                        cs.iter()
                            .filter(|(c, _)| !path.contains(c))
                            .copied()
                            .collect()
                    })
                    .unwrap_or_default();
                let sum: u64 = callers.iter().map(|(_, ir)| ir).sum();
                if sum == 0 {
                    s[GROUPS.len() - 1] = 1.0;
                } else {
                    path.insert(f);
                    for (c, ir) in callers {
                        let w = ir as f64 / sum as f64;
                        for (x, y) in s.iter_mut().zip(self.of(c, path)) {
                            *x += w * y;
                        }
                    }
                    path.remove(&f);
                }
            }
        }
        self.memo.insert(f, s);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-written profile: `main` (rest) calls `steward::run`, which
    /// calls `malloc` and `core::fmt::write`; `serde_json::from_str` calls
    /// `core::fmt::write` too and is called by `main`.
    const PROFILE: &str = "# callgrind format
version: 1
positions: line
events: Ir
summary: 1000

ob=(1) /usr/lib/x86_64-linux-gnu/libc.so.6
fn=(1) malloc
0 100

ob=(2) /bin/steward
fn=(2) main
0 50
cfn=(3) steward::run
calls=1 0
0 500
cfn=(5) serde_json::from_str'2
calls=1 0
0 450

fn=(3)
0 100
cob=(1)
cfn=(1)
calls=2 0
0 100
cfn=(4) core::fmt::write
calls=1 0
0 300

fn=(5)
0 150
cfn=(4)
calls=1 0
0 300

fn=(4)
0 600
";

    #[test]
    fn groups_add_up_and_generic_code_goes_to_its_callers() {
        let c = parse(PROFILE).unwrap();
        assert_eq!(c.total, 1000.0);
        assert_eq!(c.functions["malloc"], 100.0);
        assert_eq!(c.functions["serde_json::from_str"], 150.0);
        // core::fmt::write: 600 own, called for 300 by each of steward and
        // serde_json.
        assert_eq!(c.group("allocation"), 100.0);
        assert_eq!(c.group("steward"), 100.0 + 300.0);
        assert_eq!(c.group("JSON"), 150.0 + 300.0);
        assert_eq!(c.group("rest"), 50.0);
        assert_eq!(c.groups.iter().sum::<f64>(), c.total);
        let per = c.minus(&parse(PROFILE).unwrap()).per(10.0);
        assert_eq!(per.total, 0.0);
        assert_eq!(
            c.top(2),
            vec![(600.0, "core::fmt::write"), (150.0, "serde_json::from_str")]
        );
    }

    #[test]
    fn names_are_classified_by_crate() {
        let libc = "/usr/lib/x86_64-linux-gnu/libc.so.6";
        let group = |n: &str, ob: &str| classify(n, ob).map(|g| GROUPS[g]);
        assert_eq!(group("_int_free", libc), Some("allocation"));
        assert_eq!(group("__rustc::__rdl_alloc", "steward"), Some("allocation"));
        assert_eq!(group("_mi_malloc_generic", "steward"), Some("allocation"));
        assert_eq!(
            group(
                "core::ptr::drop_in_place<serde_json::value::Value>'2",
                "steward"
            ),
            Some("JSON")
        );
        assert_eq!(
            group("url::parser::Parser::parse_path", "steward"),
            Some("HTTP")
        );
        assert_eq!(
            group(
                "<tokio::net::tcp::stream::TcpStream as tokio::io::AsyncRead>::poll_read",
                "x"
            ),
            Some("HTTP")
        );
        assert_eq!(group("sha2::sha256::compress256", "x"), Some("steward"));
        assert_eq!(
            group("tokio::runtime::task::raw::poll", "x"),
            Some("async runtime")
        );
        assert_eq!(group("core::fmt::write", "x"), None);
        assert_eq!(group("__memcpy_avx_unaligned_erms", libc), None);
        assert_eq!(group("_dl_relocate_object", "ld-linux"), Some("rest"));
    }

    #[test]
    fn an_unfinished_profile_is_an_error() {
        assert!(parse("events: Ir\nfn=(1) main\n0 5\n").is_err());
    }
}
