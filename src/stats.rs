//! Deep statistics: the last unit of a manifest.
//!
//! [`DeepStats`] counts objects as the traversal emits them, with the keys
//! and the meaning of Tahoe-LAFS's `allmydata/deep_stats.py` (API version 1):
//! `count-immutable-files`, `count-mutable-files`, `count-literal-files`,
//! `count-files`, `count-directories`, `count-unknown`,
//! `size-immutable-files`, `size-literal-files`, `largest-directory-children`,
//! `largest-immutable-file`, and `size-files-histogram`, a list of
//! `[min, max, count]` buckets of immutable file sizes, two per decade
//! (the "5 dB" buckets `[0,0]`, `[1,3]`, `[4,10]`, `[11,31]`, `[32,100]`, ...),
//! computed with the same floating-point steps as Tahoe so the bucket edges
//! agree exactly.
//!
//! Two of Tahoe's keys need more than a gateway's listing:
//! `size-directories` and `largest-directory` are the byte sizes of the
//! directories' serialized contents, which Tahoe learns by downloading each
//! directory. The native backend reads directories itself and knows them
//! ([`steward_backend::Listing::size`]); a gateway's `t=json` does not say,
//! and once one directory was listed without its size both keys are written
//! as `null` rather than guessed. Mutable file sizes are not counted by Tahoe
//! either.
//!
//! The counts are those of the objects emitted: each unique file or
//! directory once, each LIT file and unknown node each time it is linked (as
//! Tahoe does: they have no storage index to deduplicate by).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use steward_cap::Cap;

/// The running totals of a traversal. Serializable so that a checkpoint can
/// carry them across a restart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeepStats {
    pub count_immutable_files: u64,
    pub count_mutable_files: u64,
    pub count_literal_files: u64,
    pub count_files: u64,
    pub count_directories: u64,
    pub count_unknown: u64,
    pub size_immutable_files: u64,
    pub size_literal_files: u64,
    pub largest_directory_children: u64,
    pub largest_immutable_file: u64,
    /// Bucket lower bound -> (upper bound, count).
    pub histogram: BTreeMap<u64, (u64, u64)>,
    /// Directory byte sizes, while every directory listed so far had one
    /// (`None` in a checkpoint written before they were counted: unknown).
    #[serde(default)]
    pub directory_bytes: Option<DirectoryBytes>,
}

impl Default for DeepStats {
    fn default() -> Self {
        DeepStats {
            count_immutable_files: 0,
            count_mutable_files: 0,
            count_literal_files: 0,
            count_files: 0,
            count_directories: 0,
            count_unknown: 0,
            size_immutable_files: 0,
            size_literal_files: 0,
            largest_directory_children: 0,
            largest_immutable_file: 0,
            histogram: BTreeMap::new(),
            directory_bytes: Some(DirectoryBytes::default()),
        }
    }
}

/// Tahoe's `size-directories` and `largest-directory`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryBytes {
    pub total: u64,
    pub largest: u64,
}

/// How an object counts in the deep-stats.
pub fn counted(cap: &Cap, listed_size: Option<u64>) -> Counted {
    if cap.is_directory() {
        Counted::Directory
    } else if cap.is_mutable() {
        Counted::MutableFile
    } else if cap.is_literal() {
        Counted::LiteralFile(cap.size().or(listed_size).unwrap_or(0))
    } else {
        Counted::ImmutableFile(cap.size().or(listed_size).unwrap_or(0))
    }
}

/// The kind of object being counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counted {
    Directory,
    MutableFile,
    /// An immutable (CHK) file of this size.
    ImmutableFile(u64),
    /// A literal (LIT) file of this size.
    LiteralFile(u64),
    Unknown,
}

impl DeepStats {
    /// Count one emitted object (Tahoe's `add_node`).
    pub fn add(&mut self, what: Counted) {
        match what {
            Counted::Unknown => self.count_unknown += 1,
            Counted::Directory => self.count_directories += 1,
            Counted::MutableFile => {
                self.count_files += 1;
                self.count_mutable_files += 1;
            }
            Counted::ImmutableFile(size) => {
                self.count_files += 1;
                self.bucket(size);
                self.count_immutable_files += 1;
                self.size_immutable_files += size;
                self.largest_immutable_file = self.largest_immutable_file.max(size);
            }
            Counted::LiteralFile(size) => {
                self.count_files += 1;
                self.bucket(size);
                self.count_literal_files += 1;
                self.size_literal_files += size;
            }
        }
    }

    /// Count a listed directory's children and its byte size, if the
    /// listing gave it (Tahoe's `enter_directory`).
    pub fn enter_directory(&mut self, children: usize, size: Option<u64>) {
        self.largest_directory_children = self.largest_directory_children.max(children as u64);
        self.directory_bytes = match (self.directory_bytes, size) {
            (Some(b), Some(size)) => Some(DirectoryBytes {
                total: b.total + size,
                largest: b.largest.max(size),
            }),
            _ => None,
        };
    }

    fn bucket(&mut self, size: u64) {
        let (lo, hi) = which_bucket(size);
        self.histogram.entry(lo).or_insert((hi, 0)).1 += 1;
    }

    /// The `stats` object of the final unit, keys in Tahoe's order.
    pub fn to_json(&self) -> Value {
        let hist: Vec<Value> = self
            .histogram
            .iter()
            .map(|(lo, (hi, n))| json!([lo, hi, n]))
            .collect();
        json!({
            "api-version": 1,
            "count-immutable-files": self.count_immutable_files,
            "count-mutable-files": self.count_mutable_files,
            "count-literal-files": self.count_literal_files,
            "count-files": self.count_files,
            "count-directories": self.count_directories,
            "count-unknown": self.count_unknown,
            "size-immutable-files": self.size_immutable_files,
            "size-literal-files": self.size_literal_files,
            "size-directories": self.directory_bytes.map(|b| b.total),
            "largest-directory": self.directory_bytes.map(|b| b.largest),
            "largest-directory-children": self.largest_directory_children,
            "largest-immutable-file": self.largest_immutable_file,
            "size-files-histogram": hist,
        })
    }

    /// Objects counted so far (files, directories and unknowns).
    pub fn objects(&self) -> u64 {
        self.count_files + self.count_directories + self.count_unknown
    }
}

/// The count keys of a stats object, which add up to its objects: each is
/// one object unit of the stream it closes (Tahoe's `count-files` is the
/// sum of the first three).
pub const OBJECT_COUNTS: [&str; 5] = [
    "count-immutable-files",
    "count-mutable-files",
    "count-literal-files",
    "count-directories",
    "count-unknown",
];

/// How many objects a stats object (Tahoe's or steward's) counts. A
/// missing key counts nothing; a key that is there but not a whole number
/// (a string, a float, a negative or too large number) makes the count
/// unknowable, `u64::MAX`, which no input matches: such a stats unit never
/// vouches for its objects (counted as 0, one malformed key let the others
/// equal the objects read and hide missing ones).
pub fn objects_counted(stats: &Value) -> u64 {
    OBJECT_COUNTS
        .iter()
        .map(|k| stats.get(*k).map_or(Some(0), Value::as_u64))
        .try_fold(0u64, |sum, n| Some(sum.saturating_add(n?)))
        .unwrap_or(u64::MAX)
}

/// The `(min, max)` bucket holding `size`: `(0,0)`, `(1,3)`, then each upper
/// bound is the next power of sqrt(10) above the previous one, computed by
/// repeated floating-point multiplication as Tahoe (pyutil) does.
pub fn which_bucket(size: u64) -> (u64, u64) {
    if size == 0 {
        return (0, 0);
    }
    let root = 10f64.sqrt();
    let (mut lo, mut hi) = (1u64, 3u64);
    while size > hi {
        lo = hi + 1;
        let mut p = 1f64;
        while p < lo as f64 {
            p *= root;
        }
        hi = p as u64;
    }
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_match_tahoe() {
        // Printed by Tahoe 1.20's DeepStats.which_bucket for these sizes.
        let cases = [
            (0, (0, 0)),
            (1, (1, 3)),
            (3, (1, 3)),
            (4, (4, 10)),
            (10, (4, 10)),
            (11, (11, 31)),
            (32, (32, 100)),
            (101, (101, 316)),
            (317, (317, 1000)),
            (1_000_000, (316_228, 1_000_000)),
            (1_000_000_000, (316_227_767, 1_000_000_000)),
            (1_000_000_000_000, (316_227_766_017, 1_000_000_000_000)),
            (
                1_000_000_000_000_000,
                (316_227_766_016_839, 1_000_000_000_000_002),
            ),
        ];
        for (size, want) in cases {
            assert_eq!(which_bucket(size), want, "size {size}");
        }
    }

    #[test]
    fn counting_follows_tahoe() {
        let mut s = DeepStats::default();
        s.add(Counted::Directory);
        s.enter_directory(4, Some(1200));
        s.add(Counted::Directory);
        s.enter_directory(1, Some(300));
        s.add(Counted::ImmutableFile(1000));
        s.add(Counted::ImmutableFile(5));
        s.add(Counted::LiteralFile(3));
        s.add(Counted::MutableFile);
        s.add(Counted::Unknown);
        let j = s.to_json();
        assert_eq!(j["count-files"], 4);
        assert_eq!(j["count-immutable-files"], 2);
        assert_eq!(j["size-immutable-files"], 1005);
        assert_eq!(j["largest-immutable-file"], 1000);
        assert_eq!(j["count-literal-files"], 1);
        assert_eq!(j["size-literal-files"], 3);
        assert_eq!(j["count-mutable-files"], 1);
        assert_eq!(j["count-unknown"], 1);
        assert_eq!(j["largest-directory-children"], 4);
        assert_eq!(j["size-directories"], 1500);
        assert_eq!(j["largest-directory"], 1200);
        assert_eq!(
            j["size-files-histogram"],
            json!([[1, 3, 1], [4, 10, 1], [317, 1000, 1]])
        );
        assert_eq!(s.objects(), 7);
        assert_eq!(objects_counted(&j), 7, "what a reader counts from the unit");
        assert_eq!(objects_counted(&json!({})), 0);
        assert_eq!(
            objects_counted(&json!({"count-directories": "x"})),
            u64::MAX
        );
        for bad in [
            json!("5"),
            json!(5.0),
            json!(-1),
            json!(18446744073709551616.0),
        ] {
            let j = json!({"count-literal-files": 2, "count-directories": bad});
            assert_eq!(objects_counted(&j), u64::MAX, "{j}");
        }
        // One directory listed without its size (a gateway's listing):
        // unknown from then on.
        s.enter_directory(2, None);
        s.enter_directory(2, Some(10));
        assert_eq!(s.to_json()["size-directories"], Value::Null);
        assert_eq!(s.to_json()["largest-directory"], Value::Null);
        // A checkpoint from before directory sizes were counted.
        let mut old = serde_json::to_value(DeepStats::default()).unwrap();
        old.as_object_mut().unwrap().remove("directory_bytes");
        let old: DeepStats = serde_json::from_value(old).unwrap();
        assert_eq!(old.to_json()["size-directories"], Value::Null);
        // Nothing listed at all (a file root): Tahoe's zeros.
        assert_eq!(DeepStats::default().to_json()["size-directories"], 0);
    }
}
