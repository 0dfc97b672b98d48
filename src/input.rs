//! Reading a stage's input: NDJSON units or plain caps, line by line, with
//! the byte position after each line so that a checkpoint can say exactly
//! how far the input was consumed.
//!
//! A [`LineSource`] reads a file, standard input, or a file that another
//! stage of the same process is still writing (it then reads only up to the
//! length that stage has committed, and waits for more until it is told the
//! file is complete). [`parse_line`] turns a line into a unit: blank lines
//! are skipped, a JSON unit is taken as it is, a plain cap becomes a unit of
//! its own, and anything else is an error naming the line number (a line
//! that is not valid UTF-8 too: it is never patched with U+FFFD).
//!
//! [`InputShape`] tells a complete input from one cut short: a stream of
//! steward or Tahoe units ends with a stats unit, whose counts add up to the
//! object units before it (or, in a stage's output that holds only some of
//! them, its subset mark says how many: see [`crate::unit`]). A stream cut
//! at its end has no stats unit; one cut at its head (`tail -n 50`) has one
//! that counts more objects than were read. Each stats unit closes the
//! objects since the one before it, so that manifests written one after the
//! other (`cat a b`) are whole. A plain list of caps has no stats unit and
//! needs none.

use crate::error::{Error, Result};
use crate::stats::{counted, objects_counted};
use crate::stats::{Counted, DeepStats};
use crate::unit::object_unit;
use crate::unit::{ObjectType, Subset, Unit};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;
use steward_cap::Cap;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;

/// How much of a growing file may be read: written by its producer after
/// each durable commit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Committed {
    pub len: u64,
    pub done: bool,
}

/// One input line.
#[derive(Clone, Debug)]
pub struct InputLine {
    /// 1-based line number.
    pub number: u64,
    /// Byte offset just after this line.
    pub end: u64,
    pub text: String,
    /// The input ended without a newline after this line.
    pub unterminated: bool,
    /// Where the line is not valid UTF-8 (a byte offset in it); `text` is
    /// then only for counting, never for use.
    pub invalid_utf8: Option<usize>,
}

impl InputLine {
    fn new(number: u64, end: u64, raw: &[u8], unterminated: bool) -> Self {
        let (text, invalid_utf8) = match std::str::from_utf8(raw) {
            Ok(t) => (t.to_string(), None),
            Err(e) => (String::new(), Some(e.valid_up_to())),
        };
        InputLine {
            number,
            end,
            text,
            unterminated,
            invalid_utf8,
        }
    }
}

/// What an input held, so far: enough to tell a complete stream of units
/// (one that ends with its stats unit, whose counts agree with the objects
/// before it) from one cut short, an empty input, and a plain list of caps
/// (complete by nature). Kept in the checkpoint, so that a resumed run
/// judges the whole input.
///
/// It also counts the objects the stage *wrote* since its last stats unit,
/// so that a stage that writes only some of them can say so in the stats
/// unit it passes on ([`InputShape::mark_subset`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputShape {
    /// Object units read from JSON lines.
    pub units: u64,
    /// Plain cap lines.
    pub caps: u64,
    /// Whether the last unit read was a stats unit.
    pub ended_with_stats: bool,
    /// The deep-stats of the plain caps, for the stats unit that closes the
    /// output of a plain cap list.
    pub cap_stats: DeepStats,
    /// Objects read since the last stats unit (or the start); `None` in a
    /// checkpoint of a steward that did not count them (not compared).
    #[serde(default)]
    pub since_stats: Option<u64>,
    /// The first stats unit whose count disagreed with the objects read
    /// before it.
    #[serde(default)]
    pub disagreement: Option<Disagreement>,
    /// Objects written to the output since the last stats unit written
    /// (`None` as for `since_stats`).
    #[serde(default)]
    pub written_since_stats: Option<u64>,
}

impl Default for InputShape {
    fn default() -> Self {
        InputShape {
            units: 0,
            caps: 0,
            ended_with_stats: false,
            cap_stats: DeepStats::default(),
            since_stats: Some(0),
            disagreement: None,
            written_since_stats: Some(0),
        }
    }
}

/// A stats unit whose count is not the number of objects read before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disagreement {
    /// What the stats unit counts (its subset mark's number, if it has one).
    pub counted: u64,
    /// Object units read before it (since the stats unit before it).
    pub read: u64,
    /// The count was a subset mark's.
    pub subset: bool,
}

/// How complete an input was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completeness {
    /// It ended with its stats unit, which counts the objects read, or it
    /// was a plain list of caps.
    Complete,
    /// Nothing in it (or only blank lines).
    Empty,
    /// Only a stats unit that counts no objects: whole, and nothing to do.
    NoObjects,
    /// Units without the stats unit that ends every manifest: cut short.
    Partial { objects: u64 },
    /// A stats unit that counts other objects than those read before it:
    /// the head of the stream was cut, or lines were lost or added.
    Disagrees(Disagreement),
}

/// What a stats unit counts, as a reader compares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatsCount {
    pub objects: u64,
    /// The number is the subset mark's, not the stats' counts.
    pub subset: bool,
}

impl StatsCount {
    /// What `stats` (with its `subset` mark, if any) counts.
    pub fn of(stats: &serde_json::Value, subset: Option<Subset>) -> StatsCount {
        match subset {
            Some(s) => StatsCount {
                objects: s.objects,
                subset: true,
            },
            None => StatsCount {
                objects: objects_counted(stats),
                subset: false,
            },
        }
    }
}

/// What one input unit adds to an [`InputShape`] (small and `Copy`, so
/// that it can travel with the unit and be applied in input order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    Stats(StatsCount),
    /// An object unit from a JSON line.
    Unit,
    /// An object from a plain cap line, and how it counts in deep-stats.
    Cap(Option<Counted>),
}

impl Seen {
    /// What `unit` (read from a plain cap line if `from_cap`) adds.
    pub fn of(unit: &Unit, from_cap: bool) -> Seen {
        match unit {
            Unit::Stats(s, subset) => Seen::Stats(StatsCount::of(s, *subset)),
            Unit::Object(_) if !from_cap => Seen::Unit,
            Unit::Object(o) => Seen::Cap(Cap::parse(&o.cap).ok().map(|c| counted(&c, None))),
        }
    }
}

impl InputShape {
    /// Count one unit, in input order.
    pub fn record(&mut self, seen: Seen) {
        self.ended_with_stats = matches!(seen, Seen::Stats(_));
        match seen {
            Seen::Stats(c) => {
                if let Some(read) = self.since_stats {
                    if read != c.objects && self.disagreement.is_none() {
                        self.disagreement = Some(Disagreement {
                            counted: c.objects,
                            read,
                            subset: c.subset,
                        });
                    }
                }
                self.since_stats = Some(0);
            }
            Seen::Unit => {
                self.units += 1;
                self.since_stats = self.since_stats.map(|n| n + 1);
            }
            Seen::Cap(c) => {
                self.caps += 1;
                self.since_stats = self.since_stats.map(|n| n + 1);
                if let Some(c) = c {
                    self.cap_stats.add(c);
                }
            }
        }
    }

    /// Count one unit written to the output (call before writing it, and
    /// before [`InputShape::record`] of the input unit it came from).
    pub fn wrote(&mut self, unit: &Unit) {
        self.written_since_stats = match unit {
            Unit::Stats(..) => Some(0),
            Unit::Object(_) => self.written_since_stats.map(|n| n + 1),
        };
    }

    /// Mark the stats unit `out` about to be written, which a stats unit of
    /// the input counting `read` became, as a subset when the stage wrote
    /// fewer (or more) objects than it read since the last one: the tree's
    /// stats are kept, and the mark says how many objects this output holds
    /// (see [`crate::unit`]). Nothing is marked when the input was itself
    /// incomplete (its stats unit disagreed with what was read): the stats
    /// unit is passed on as it was, and disagrees in the output too, so the
    /// next reader is told as well.
    pub fn mark_subset(&self, read: StatsCount, out: &mut Unit) {
        let (Some(objects), Some(written)) = (self.since_stats, self.written_since_stats) else {
            return;
        };
        if let Unit::Stats(_, subset) = out {
            if written != objects && objects == read.objects {
                *subset = Some(Subset { objects: written });
            }
        }
    }

    /// Whether this is a plain list of caps (no JSON unit at all).
    pub fn is_cap_list(&self) -> bool {
        self.caps > 0 && self.units == 0 && !self.ended_with_stats
    }

    /// The stats unit that closes the output of a plain cap list, so that
    /// the next stage can tell it complete, and what it counts.
    pub fn closing_unit(&self) -> Option<(Unit, StatsCount)> {
        self.is_cap_list().then(|| {
            let stats = self.cap_stats.to_json();
            let count = StatsCount {
                objects: self.caps,
                subset: false,
            };
            (Unit::Stats(stats, None), count)
        })
    }

    /// How complete the input was, once read to its end.
    pub fn completeness(&self) -> Completeness {
        if self.is_cap_list() {
            Completeness::Complete
        } else if !self.ended_with_stats {
            if self.units + self.caps == 0 {
                Completeness::Empty
            } else {
                Completeness::Partial {
                    objects: self.units + self.caps,
                }
            }
        } else if let Some(d) = self.disagreement {
            Completeness::Disagrees(d)
        } else if self.units + self.caps == 0 {
            Completeness::NoObjects
        } else {
            Completeness::Complete
        }
    }
}

/// Refuse an input that is a directory, before anything of the run is
/// created (reading it would say only "Is a directory (os error 21)").
/// Standard input and an input that cannot be read yet pass: opening it
/// says why.
pub fn refuse_directory(input: Option<&Path>) -> Result<()> {
    match input {
        Some(p) if p.as_os_str() != "-" && std::fs::metadata(p).is_ok_and(|m| m.is_dir()) => {
            Err(directory_input(p))
        }
        _ => Ok(()),
    }
}

fn directory_input(p: &Path) -> Error {
    Error::input(format!(
        "input {} is a directory: give a file of units (a manifest or check results) or of caps, or - for standard input",
        p.display()
    ))
}

/// How much of an input is hashed to recognise it again on resume.
pub const INPUT_PREFIX: usize = 64 * 1024;

/// Reads lines with their positions.
pub struct LineSource {
    reader: Box<dyn AsyncRead + Unpin + Send>,
    limit: Option<watch::Receiver<Committed>>,
    /// Bytes read from the reader so far.
    read: u64,
    /// Bytes handed out as lines so far.
    pos: u64,
    line: u64,
    buf: Vec<u8>,
    eof: bool,
    /// The first bytes read, to recognise this input again on resume.
    head: Vec<u8>,
    name: String,
    /// The input's length, when it is a file of known length (for an ETA).
    size: Option<u64>,
}

impl LineSource {
    fn new(
        reader: Box<dyn AsyncRead + Unpin + Send>,
        name: String,
        limit: Option<watch::Receiver<Committed>>,
    ) -> Self {
        LineSource {
            reader,
            limit,
            read: 0,
            pos: 0,
            line: 0,
            buf: Vec::new(),
            eof: false,
            head: Vec::new(),
            name,
            size: None,
        }
    }

    /// Standard input, or a file (`-` or `None` is standard input).
    pub async fn open(path: Option<&Path>) -> Result<LineSource> {
        match path {
            None => Ok(Self::new(
                Box::new(tokio::io::stdin()),
                "standard input".into(),
                None,
            )),
            Some(p) if p.as_os_str() == "-" => Ok(Self::new(
                Box::new(tokio::io::stdin()),
                "standard input".into(),
                None,
            )),
            Some(p) => {
                let f = tokio::fs::File::open(p)
                    .await
                    .map_err(|e| Error::io(format!("cannot open input {}", p.display()), e))?;
                let meta = f.metadata().await.ok();
                if meta.as_ref().is_some_and(|m| m.is_dir()) {
                    return Err(directory_input(p));
                }
                let size = meta.filter(|m| m.is_file()).map(|m| m.len());
                let mut s = Self::new(Box::new(f), p.display().to_string(), None);
                s.size = size;
                Ok(s)
            }
        }
    }

    /// A file another stage is writing; read only what it has committed.
    pub async fn follow(
        path: &Path,
        mut committed: watch::Receiver<Committed>,
    ) -> Result<LineSource> {
        // The producer creates the file before its first commit: wait for it.
        if committed.wait_for(|c| c.len > 0 || c.done).await.is_err() {
            return Err(Error::new(
                crate::error::ErrorKind::Interrupted,
                format!("the stage writing {} stopped", path.display()),
            ));
        }
        let f = tokio::fs::File::open(path)
            .await
            .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
        Ok(Self::new(
            Box::new(f),
            path.display().to_string(),
            Some(committed),
        ))
    }

    /// Units another stage is writing elsewhere (a database table), read
    /// through `reader` only as far as `committed` says.
    pub fn from_reader(
        reader: Box<dyn AsyncRead + Unpin + Send>,
        name: String,
        committed: watch::Receiver<Committed>,
    ) -> LineSource {
        Self::new(reader, name, Some(committed))
    }

    /// The input's length in bytes, if known (a file; not a pipe, nor a
    /// file another stage is still writing).
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// A name for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The base32 SHA-256 of the input's first `min(upto, INPUT_PREFIX)`
    /// bytes (all of them must have been read), and that length.
    pub fn prefix_hash(&self, upto: u64) -> (String, u64) {
        let n = (upto as usize).min(self.head.len());
        (
            steward_cap::base32::encode(&Sha256::digest(&self.head[..n])),
            n as u64,
        )
    }

    /// Bytes of input handed out as lines so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    async fn fill(&mut self) -> Result<bool> {
        let mut allowed = usize::MAX;
        if let Some(w) = &mut self.limit {
            loop {
                let c = *w.borrow_and_update();
                if c.len > self.read {
                    allowed = (c.len - self.read) as usize;
                    break;
                }
                if c.done {
                    return Ok(false);
                }
                if w.changed().await.is_err() {
                    // The producer is gone without saying it is done.
                    return Err(Error::new(
                        crate::error::ErrorKind::Interrupted,
                        format!("the stage writing {} stopped", self.name),
                    ));
                }
            }
        }
        let mut chunk = vec![0u8; allowed.min(256 * 1024)];
        let n = self
            .reader
            .read(&mut chunk)
            .await
            .map_err(|e| Error::io(format!("reading {}", self.name), e))?;
        if n == 0 {
            if self.limit.is_some() {
                return Err(Error::checkpoint(format!(
                    "{} is shorter than its producer committed: was it changed underneath?",
                    self.name
                )));
            }
            return Ok(false);
        }
        let want = INPUT_PREFIX.saturating_sub(self.head.len());
        self.head.extend_from_slice(&chunk[..want.min(n)]);
        self.read += n as u64;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(true)
    }

    /// The next line, or `None` at the end of the input.
    pub async fn next_line(&mut self) -> Result<Option<InputLine>> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let raw: Vec<u8> = self.buf.drain(..=i).collect();
                self.pos += raw.len() as u64;
                self.line += 1;
                return Ok(Some(InputLine::new(
                    self.line,
                    self.pos,
                    &raw[..raw.len() - 1],
                    false,
                )));
            }
            if self.eof || !self.fill().await? {
                self.eof = true;
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let raw = std::mem::take(&mut self.buf);
                self.pos += raw.len() as u64;
                self.line += 1;
                return Ok(Some(InputLine::new(self.line, self.pos, &raw, true)));
            }
        }
    }

    /// Skip input up to byte `offset` (a resume), counting lines.
    pub async fn skip_to(&mut self, offset: u64) -> Result<()> {
        while self.pos < offset {
            match self.next_line().await? {
                Some(l) if l.end <= offset => {}
                _ => {
                    return Err(Error::checkpoint(format!(
                        "{} is shorter than its checkpoint says was read ({offset} bytes): is it another input? Use --restart to start over",
                        self.name
                    )))
                }
            }
        }
        Ok(())
    }
}

/// Turn an input line into a unit: `Ok(None)` for a blank line. A plain cap
/// becomes an object unit with an empty path. Errors never quote the line.
pub fn parse_line(line: &InputLine) -> std::result::Result<Option<Unit>, String> {
    if let Some(at) = line.invalid_utf8 {
        return Err(format!(
            "not valid UTF-8 (from byte {}): a unit's names and caps are Unicode text",
            at + 1
        ));
    }
    let t = line.text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    if t.starts_with('{') {
        if line.unterminated {
            // A unit cut short by a crash or a full disk: never guess.
            if serde_json::from_str::<serde_json::Value>(t).is_err() {
                return Err("truncated JSON (the input ends in the middle of a unit)".into());
            }
        }
        return Unit::parse(t).map(Some);
    }
    if t.starts_with("URI:") || t.starts_with("ro.") || t.starts_with("imm.") {
        let cap = Cap::parse(t).map_err(|e| e.to_string())?;
        let object_type = if cap.is_directory() {
            ObjectType::Directory
        } else {
            ObjectType::File
        };
        let authority = cap.authority();
        return Ok(Some(Unit::Object(Box::new(object_unit(
            object_type,
            vec![],
            &cap,
            authority,
        )))));
    }
    if t.starts_with("ERROR:") {
        return Err("an ERROR: line from a Tahoe gateway stream: the stream that wrote this input stopped there; the objects after it were never listed".into());
    }
    Err(format!(
        "neither a JSON unit nor a cap (starts with {:?})",
        steward_cap::redact(t)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> InputLine {
        InputLine::new(1, 0, text.as_bytes(), false)
    }

    #[test]
    fn lines_are_classified() {
        assert!(parse_line(&line("  ")).unwrap().is_none());
        match parse_line(&line("URI:LIT:mfrgg")).unwrap().unwrap() {
            Unit::Object(o) => assert_eq!(o.cap, "URI:LIT:mfrgg"),
            _ => panic!(),
        }
        assert!(parse_line(&line("hello world"))
            .unwrap_err()
            .contains("neither"));
        assert!(parse_line(&line("ERROR: UnrecoverableFileError"))
            .unwrap_err()
            .contains("ERROR:"));
        let mut l = line("{\"type\":\"file\",\"pa");
        l.unterminated = true;
        assert!(parse_line(&l).unwrap_err().contains("truncated"));
        assert!(parse_line(&line("URI:CHK:zz")).is_err());
    }

    #[tokio::test]
    async fn a_line_that_is_not_utf8_is_an_error_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in");
        std::fs::write(
            &p,
            b"{\"type\": \"file\", \"path\": [\"a\xffb\"]}\nURI:LIT:mfrgg\n",
        )
        .unwrap();
        let mut s = LineSource::open(Some(&p)).await.unwrap();
        let l = s.next_line().await.unwrap().unwrap();
        let err = parse_line(&l).unwrap_err();
        assert!(err.contains("UTF-8") && err.contains("byte 29"), "{err}");
        let l = s.next_line().await.unwrap().unwrap();
        assert!(parse_line(&l).unwrap().is_some(), "the next line is read");
    }

    #[test]
    fn completeness_of_inputs() {
        let unit = |l: &str| parse_line(&line(l)).unwrap().unwrap();
        let obj = unit(r#"{"type": "file", "path": [], "cap": "URI:LIT:mfrgg"}"#);
        let stats = |n: u64| {
            unit(&format!(
                r#"{{"type": "stats", "stats": {{"count-literal-files": {n}}}}}"#
            ))
        };
        let cap = unit("URI:LIT:mfrgg");
        let mut s = InputShape::default();
        assert_eq!(s.completeness(), Completeness::Empty);
        s.record(Seen::of(&obj, false));
        s.record(Seen::of(&obj, false));
        assert_eq!(s.completeness(), Completeness::Partial { objects: 2 });
        s.record(Seen::of(&stats(2), false));
        assert_eq!(s.completeness(), Completeness::Complete);
        assert!(s.closing_unit().is_none());
        // A second manifest after the first (`cat a b`): each stats unit
        // closes the objects since the one before it.
        s.record(Seen::of(&obj, false));
        assert_eq!(
            s.completeness(),
            Completeness::Partial { objects: 3 },
            "a unit after the stats"
        );
        s.record(Seen::of(&stats(1), false));
        assert_eq!(s.completeness(), Completeness::Complete);
        let mut c = InputShape::default();
        c.record(Seen::of(&cap, true));
        assert_eq!(c.completeness(), Completeness::Complete);
        match c.closing_unit() {
            Some((Unit::Stats(v, None), n)) => {
                assert_eq!(v["count-literal-files"], 1);
                assert_eq!(n.objects, 1);
            }
            other => panic!("{other:?}"),
        }
        c.record(Seen::of(&obj, false));
        assert_eq!(c.completeness(), Completeness::Partial { objects: 2 });
    }

    #[test]
    fn a_stats_unit_that_counts_other_objects_is_incomplete() {
        let unit = |l: &str| parse_line(&line(l)).unwrap().unwrap();
        let obj = unit(r#"{"type": "file", "path": [], "cap": "URI:LIT:mfrgg"}"#);
        let stats = unit(
            r#"{"type": "stats", "stats": {"count-immutable-files": 400, "count-mutable-files": 1, "count-literal-files": 1, "count-directories": 20, "count-unknown": 0}}"#,
        );
        // The tail of a manifest of 422 objects.
        let mut s = InputShape::default();
        for _ in 0..49 {
            s.record(Seen::of(&obj, false));
        }
        s.record(Seen::of(&stats, false));
        let d = Disagreement {
            counted: 422,
            read: 49,
            subset: false,
        };
        assert_eq!(s.completeness(), Completeness::Disagrees(d));
        // Only a stats unit: it counts objects that are not there.
        let mut s = InputShape::default();
        s.record(Seen::of(&stats, false));
        assert!(matches!(
            s.completeness(),
            Completeness::Disagrees(Disagreement { read: 0, .. })
        ));
        // A stats unit that counts nothing, alone: no objects, whole.
        let mut s = InputShape::default();
        s.record(Seen::of(&unit(r#"{"type": "stats", "stats": {}}"#), false));
        assert_eq!(s.completeness(), Completeness::NoObjects);
        // A stats unit with no counts after objects vouches for none.
        let mut s = InputShape::default();
        s.record(Seen::of(&obj, false));
        s.record(Seen::of(&unit(r#"{"type": "stats", "stats": {}}"#), false));
        assert!(matches!(s.completeness(), Completeness::Disagrees(_)));
        // The first disagreement is kept, whatever follows.
        let mut s = InputShape::default();
        s.record(Seen::of(&stats, false));
        s.record(Seen::of(&obj, false));
        s.record(Seen::of(
            &unit(r#"{"type": "stats", "stats": {"count-directories": 1}}"#),
            false,
        ));
        assert!(matches!(
            s.completeness(),
            Completeness::Disagrees(Disagreement { counted: 422, .. })
        ));
    }

    #[test]
    fn a_stage_that_writes_fewer_objects_marks_its_stats_unit() {
        let unit = |l: &str| parse_line(&line(l)).unwrap().unwrap();
        let obj = unit(r#"{"type": "file", "path": [], "cap": "URI:LIT:mfrgg"}"#);
        let stats = unit(r#"{"type": "stats", "stats": {"count-literal-files": 3}}"#);
        let Seen::Stats(count) = Seen::of(&stats, false) else {
            panic!()
        };
        // Three read, one written: the stats unit says it holds one.
        let mut s = InputShape::default();
        for n in 0..3 {
            if n == 1 {
                s.wrote(&obj);
            }
            s.record(Seen::of(&obj, false));
        }
        let mut out = stats.clone();
        s.mark_subset(count, &mut out);
        assert_eq!(
            out.to_line(),
            r#"{"type": "stats", "stats": {"count-literal-files": 3}, "subset": {"objects": 1}}"#
        );
        s.wrote(&out);
        s.record(Seen::of(&stats, false));
        assert_eq!(s.completeness(), Completeness::Complete);
        // Read back, it is whole; cut, it is not.
        let mut r = InputShape::default();
        r.record(Seen::of(&obj, false));
        r.record(Seen::of(&out, false));
        assert_eq!(r.completeness(), Completeness::Complete);
        let mut r = InputShape::default();
        r.record(Seen::of(&out, false));
        assert_eq!(
            r.completeness(),
            Completeness::Disagrees(Disagreement {
                counted: 1,
                read: 0,
                subset: true
            })
        );
        // All written: no mark.
        let mut s = InputShape::default();
        s.record(Seen::of(&obj, false));
        s.wrote(&obj);
        let mut out = unit(r#"{"type": "stats", "stats": {"count-literal-files": 1}}"#);
        let Seen::Stats(c1) = Seen::of(&out, false) else {
            panic!()
        };
        s.mark_subset(c1, &mut out);
        assert!(matches!(out, Unit::Stats(_, None)));
        // An input that was itself incomplete (two read of three): its
        // stats unit is passed on unmarked, and disagrees downstream too.
        let mut s = InputShape::default();
        s.record(Seen::of(&obj, false));
        s.record(Seen::of(&obj, false));
        let mut out = stats.clone();
        s.mark_subset(count, &mut out);
        assert_eq!(out, stats);
    }

    #[tokio::test]
    async fn a_directory_is_refused_with_what_to_give() {
        let dir = tempfile::tempdir().unwrap();
        let err = LineSource::open(Some(dir.path())).await.err().unwrap();
        let msg = err.to_string();
        assert!(
            msg.contains(&dir.path().display().to_string()) && msg.contains("is a directory"),
            "{msg}"
        );
        assert!(!msg.contains("os error"), "{msg}");
    }

    #[tokio::test]
    async fn positions_and_unterminated_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in");
        std::fs::write(&p, "a\n\nbc\nlast").unwrap();
        let mut s = LineSource::open(Some(&p)).await.unwrap();
        let mut got = vec![];
        while let Some(l) = s.next_line().await.unwrap() {
            got.push((l.number, l.end, l.text, l.unterminated));
        }
        assert_eq!(
            got,
            vec![
                (1, 2, "a".to_string(), false),
                (2, 3, "".to_string(), false),
                (3, 6, "bc".to_string(), false),
                (4, 10, "last".to_string(), true)
            ]
        );
        let mut s = LineSource::open(Some(&p)).await.unwrap();
        s.skip_to(6).await.unwrap();
        assert_eq!(s.next_line().await.unwrap().unwrap().text, "last");
        let mut s = LineSource::open(Some(&p)).await.unwrap();
        assert!(s.skip_to(100).await.is_err());
    }

    #[tokio::test]
    async fn following_reads_only_committed_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("grow");
        std::fs::write(&p, "one\ntwo\nthr").unwrap();
        let (tx, rx) = watch::channel(Committed {
            len: 4,
            done: false,
        });
        let mut s = LineSource::follow(&p, rx).await.unwrap();
        assert_eq!(s.next_line().await.unwrap().unwrap().text, "one");
        let h = tokio::spawn(async move { s.next_line().await.unwrap().unwrap().text });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!h.is_finished(), "must wait for a commit");
        tx.send(Committed { len: 8, done: true }).unwrap();
        assert_eq!(h.await.unwrap(), "two");
    }
}
