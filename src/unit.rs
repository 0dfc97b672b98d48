//! The unit format: what every stage reads and writes, one JSON object per line.
//!
//! steward speaks the NDJSON format of Tahoe-LAFS's own streaming deep
//! operations (`t=stream-manifest` and `t=stream-deep-check` in
//! `docs/frontends/webapi.rst`), so that a file written by one tool can be
//! read by the other. A stream is a sequence of *object units* followed by
//! one *stats unit*.
//!
//! # Object units
//!
//! ```json
//! {"type": "file", "path": ["docs", "a.txt"], "cap": "URI:CHK:...",
//!  "verifycap": "URI:CHK-Verifier:...", "repaircap": "URI:CHK:...",
//!  "storage-index": "rbrklpiblumo2dmqx6krlziaom"}
//! ```
//!
//! | field | meaning |
//! |---|---|
//! | `type` | `file`, `directory` or `unknown` (a cap this version of Tahoe does not know) |
//! | `path` | list of names from the root; `[]` is the root itself. Names are Unicode; non-ASCII characters are written as `\uXXXX` escapes, as Tahoe writes them |
//! | `cap` | the strongest cap the run was allowed to write (`--caps`): a write cap, a read cap, or only the verify cap |
//! | `verifycap` | the verify cap; `""` for literal (LIT) objects, which have no shares |
//! | `repaircap` | as Tahoe writes it: the verify cap of an immutable file, the write cap of a mutable file or directory (`""` unless the run was allowed to write write caps), `""` for LIT objects and immutable directories. steward's repair stage repairs immutable objects through the gateway with their read cap (`cap`) |
//! | `storage-index` | base32 storage index; `""` for LIT objects |
//! | `error` | only when something went wrong for this object: `{"code": "...", "message": "..."}` (below) |
//! | `check-results` | added by `steward check`: Tahoe's check-results object (`storage-index`, `summary`, `results` with `healthy`, `recoverable`, `count-shares-good`, ...) |
//! | `check-and-repair-results` | added by `steward repair`: Tahoe's check-and-repair-results object (`repair-attempted`, `repair-successful`, `pre-repair-results`, `post-repair-results`) |
//! | `repair` | added by `steward repair`: why the object was or was not repaired (`{"action": "repaired" \| "skipped" \| "would-repair" \| "not-repairable", "reason": "..."}`) |
//! | `literal` | `true` only in a `--caps verify` manifest, for a LIT object (whose cap is its data, so it is not written). Without it, a unit with no cap is a bad unit: a unit is read from its parsed caps, never from which fields are empty |
//!
//! # Error codes
//!
//! An `error` object's `code` is stable and machine-readable; `message` is one
//! line for people and never holds a whole cap. See
//! [`steward_backend::ErrorCode`] for the list: `unrecoverable`,
//! `gateway-timeout`, `gateway-http-5xx`, `gateway-http-4xx`,
//! `gateway-unreachable`, `bad-response`, `bad-cap`,
//! `insufficient-authority`, `not-supported`, `server-error`.
//!
//! # The stats unit
//!
//! `{"type": "stats", "stats": {...}}` ends a manifest; its keys are Tahoe's
//! deep-stats keys (see [`crate::stats`]). Its counts
//! (`count-immutable-files`, `count-mutable-files`, `count-literal-files`,
//! `count-directories`, `count-unknown`) add up to the object units before
//! it, one per object, as in Tahoe's own streams: a reader that finds
//! another number knows the stream is not whole ([`crate::input`]).
//!
//! A stage that writes only some of the objects it read (`steward repair`
//! without `--all` writes only those it acted on) keeps the tree's stats,
//! which still describe the tree, and says so beside them:
//! `{"type": "stats", "stats": {...}, "subset": {"objects": 3}}`, the number
//! of object units it wrote before it. A reader then counts against that
//! number. The `stats` object itself is never changed, so it stays Tahoe's.

use crate::error::Result;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io;
use steward_backend::{CheckResults, RepairResults};
use steward_cap::{Authority, Cap};

/// What kind of object a unit describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectType {
    File,
    Directory,
    Unknown,
}

/// A typed error inside a unit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitError {
    pub code: String,
    pub message: String,
}

impl From<&steward_backend::BackendError> for UnitError {
    fn from(e: &steward_backend::BackendError) -> Self {
        UnitError {
            code: e.code.as_str().to_string(),
            message: e.message.clone(),
        }
    }
}

/// What the repair stage did with an object (the unit's `repair` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RepairAction {
    /// Sent for repair; `check-and-repair-results` says how it went.
    Repaired,
    /// `--dry-run`: would have been repaired.
    WouldRepair,
    /// Unrecoverable, or no cap strong enough to repair it.
    NotRepairable,
    /// Healthy enough, or not checked (see the reason).
    Skipped,
}

impl RepairAction {
    pub fn as_str(self) -> &'static str {
        match self {
            RepairAction::Repaired => "repaired",
            RepairAction::WouldRepair => "would-repair",
            RepairAction::NotRepairable => "not-repairable",
            RepairAction::Skipped => "skipped",
        }
    }
}

/// The unit's `repair` field: what was done, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairNote {
    pub action: RepairAction,
    pub reason: String,
}

impl RepairNote {
    pub fn new(action: RepairAction, reason: impl Into<String>) -> Self {
        RepairNote {
            action,
            reason: reason.into(),
        }
    }
}

/// One object of the tree, with whatever the stages so far added to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ObjectUnit {
    pub path: Vec<String>,
    #[serde(default)]
    pub cap: String,
    #[serde(rename = "type")]
    pub object_type: ObjectType,
    #[serde(default)]
    pub verifycap: String,
    #[serde(default)]
    pub repaircap: String,
    #[serde(rename = "storage-index", default)]
    pub storage_index: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<UnitError>,
    #[serde(
        rename = "check-results",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub check_results: Option<CheckResults>,
    #[serde(
        rename = "check-and-repair-results",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub check_and_repair_results: Option<RepairResults>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repair: Option<RepairNote>,
    /// A literal (LIT) object whose cap a `--caps verify` manifest does not
    /// write (its cap is its data): without this mark a unit with no cap is
    /// a bad unit, never taken for a literal one. Written only then.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub literal: bool,
    /// The parsed cap the unit was built from, in memory only (see
    /// [`BuiltFrom`]).
    #[serde(skip)]
    pub built_from: BuiltFrom,
}

/// The strongest cap a unit built by [`object_unit`] holds, kept in memory
/// beside its text and never written, with a fingerprint of the cap fields
/// it was written into. The check stage of a `deep-check` takes it instead
/// of parsing those fields again (a base32 decode, and a SHA-256d for every
/// read or write cap: a fifth of `deep-check`'s instructions per object),
/// but only while the fields still have the fingerprint: a unit whose cap
/// fields were changed since, or that was read from a file, is classified
/// from its parsed text as before. Units compare equal whatever it holds.
#[derive(Clone, Default)]
pub struct BuiltFrom(Option<Box<(u64, Option<Cap>)>>);

impl BuiltFrom {
    fn new(u: &ObjectUnit, strongest: Option<Cap>) -> BuiltFrom {
        BuiltFrom(Some(Box::new((cap_fingerprint(u), strongest))))
    }
}

impl PartialEq for BuiltFrom {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for BuiltFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BuiltFrom")
    }
}

/// A fingerprint of the fields a unit's caps are classified from: a
/// multiply-rotate hash (FxHash's step), which costs a tenth of std's
/// SipHash here and needs no resistance to chosen inputs (both ends of the
/// comparison are in this process, from fields it wrote).
fn cap_fingerprint(u: &ObjectUnit) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = u64::from(u.literal);
    for field in [&u.cap, &u.repaircap, &u.verifycap, &u.storage_index] {
        let bytes = field.as_bytes();
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let w = u64::from_le_bytes(w.try_into().expect("8 bytes"));
            h = (h.rotate_left(5) ^ w).wrapping_mul(K);
        }
        let mut last = [0u8; 8];
        last[..words.remainder().len()].copy_from_slice(words.remainder());
        // The length ends each field, so that moving bytes from one field
        // to the next changes the fingerprint.
        h = (h.rotate_left(5) ^ u64::from_le_bytes(last)).wrapping_mul(K);
        h = (h.rotate_left(5) ^ bytes.len() as u64).wrapping_mul(K);
    }
    h
}

impl ObjectUnit {
    /// The strongest cap of a unit built by [`object_unit`] (`None` for a
    /// literal object of a `--caps verify` manifest, which holds none),
    /// while its cap fields are those it was built with; else `None`.
    pub fn built_cap(&self) -> Option<Option<&Cap>> {
        let (fp, cap) = self.built_from.0.as_deref()?;
        (*fp == cap_fingerprint(self)).then_some(cap.as_ref())
    }
}

/// Build the unit for one object, writing no cap stronger than `caps`.
pub fn object_unit(
    object_type: ObjectType,
    path: Vec<String>,
    cap: &Cap,
    caps: Authority,
) -> ObjectUnit {
    let written = cap.weaken_to(caps);
    // Tahoe's get_repair_cap(): the verify cap of an immutable file (its
    // repairer needs no more), the write cap of a mutable file or directory,
    // nothing for literal objects, immutable directories and read-only
    // mutable objects. A write cap is written only when allowed.
    let repaircap = if cap.is_literal() || (cap.is_directory() && !cap.is_mutable()) {
        None
    } else if cap.is_mutable() {
        (caps == Authority::Write && cap.authority() == Authority::Write).then(|| cap.clone())
    } else {
        cap.to_verify_cap()
    };
    // A LIT cap is its data: with verify caps only, it is not written, and
    // the unit says it is a literal object instead.
    let literal = cap.is_literal() && written.is_none();
    let verifycap = cap.to_verify_cap();
    let text = |c: &Option<Cap>| {
        c.as_ref()
            .map(|c| c.expose().to_string())
            .unwrap_or_default()
    };
    let mut u = ObjectUnit {
        object_type,
        path,
        cap: text(&written),
        verifycap: text(&verifycap),
        repaircap: text(&repaircap),
        storage_index: cap
            .storage_index()
            .map(|s| s.to_string())
            .unwrap_or_default(),
        error: None,
        check_results: None,
        check_and_repair_results: None,
        repair: None,
        literal,
        built_from: BuiltFrom::default(),
    };
    // The strongest cap written: the cap itself as far as allowed, else
    // the verify cap (a repair cap is never stronger than the cap written).
    u.built_from = BuiltFrom::new(&u, written.or(verifycap));
    u
}

/// One line of a stream.
#[derive(Clone, Debug, PartialEq)]
pub enum Unit {
    Object(Box<ObjectUnit>),
    /// The stats, and the subset mark of a stream that holds only some of
    /// the objects they count.
    Stats(Value, Option<Subset>),
}

/// The mark of a stats unit closing a stream that holds only some of the
/// objects its stats count (see the module doc): how many it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subset {
    pub objects: u64,
}

impl Unit {
    /// Parse one line. Errors say what is wrong and in which field, never
    /// quoting the line or a value from it (they may be caps): serde's own
    /// messages quote values, so the fields are checked here first and a
    /// serde message is never passed on.
    pub fn parse(line: &str) -> Result<Unit, String> {
        let v: Value = serde_json::from_str(line).map_err(|e| {
            if e.is_eof() {
                "truncated JSON (the line ends in the middle of a unit)".to_string()
            } else {
                // Syntax errors name a position, never the text.
                format!(
                    "not JSON ({:?} error at column {})",
                    e.classify(),
                    e.column()
                )
            }
        })?;
        match v.get("type").and_then(Value::as_str) {
            Some("stats") => {
                let subset = match v.get("subset") {
                    None => None,
                    Some(s) => Some(
                        serde_json::from_value(s.clone())
                            .map_err(|_| "its \"subset\" is not {\"objects\": N}".to_string())?,
                    ),
                };
                Ok(Unit::Stats(
                    v.get("stats").cloned().unwrap_or(Value::Null),
                    subset,
                ))
            }
            Some("file" | "directory" | "unknown") => {
                check_fields(&v)?;
                serde_json::from_value(v)
                    .map(|o| Unit::Object(Box::new(o)))
                    .map_err(|_| {
                        "not a steward/Tahoe unit (a field has the wrong type)".to_string()
                    })
            }
            Some(_) => Err(
                "unknown unit type (a unit's \"type\" is file, directory, unknown or stats)"
                    .to_string(),
            ),
            None => Err("JSON without a \"type\" field".to_string()),
        }
    }

    /// The line for this unit, without newline, in Tahoe's ASCII-only JSON.
    pub fn to_line(&self) -> String {
        let mut out = Vec::with_capacity(256);
        self.write_json(&mut out)
            .expect("serializing a unit to memory cannot fail");
        String::from_utf8(out).expect("ASCII output")
    }

    /// Writes the line for this unit and a newline to `w`: the bytes of
    /// [`Unit::to_line`], without building a string first (one unit per
    /// object is written, so the buffer it would take is saved).
    pub fn write_line<W: io::Write>(&self, w: &mut W) -> io::Result<()> {
        self.write_json(w)?;
        w.write_all(b"\n")
    }

    fn write_json<W: io::Write>(&self, w: &mut W) -> io::Result<()> {
        match self {
            Unit::Object(o) => write_ascii_json(w, o),
            Unit::Stats(s, None) => {
                write_ascii_json(w, &serde_json::json!({"type": "stats", "stats": s}))
            }
            Unit::Stats(s, Some(subset)) => write_ascii_json(
                w,
                &serde_json::json!({"type": "stats", "stats": s, "subset": subset}),
            ),
        }
    }
}

/// Check the fields of an object unit's JSON have the types of
/// [`ObjectUnit`], naming the first that does not (never its value).
fn check_fields(v: &Value) -> Result<(), String> {
    let wrong = |field: &str, want: &str| Err(format!("its \"{field}\" is not {want}"));
    match v.get("path") {
        Some(Value::Array(names)) if names.iter().all(Value::is_string) => {}
        Some(_) => return wrong("path", "a list of names"),
        None => return Err("it has no \"path\"".to_string()),
    }
    for field in ["cap", "verifycap", "repaircap", "storage-index"] {
        match v.get(field) {
            None | Some(Value::String(_)) => {}
            Some(_) => return wrong(field, "a string"),
        }
    }
    match v.get("error") {
        None | Some(Value::Null) => {}
        Some(e)
            if e.get("code").is_some_and(Value::is_string)
                && e.get("message").is_some_and(Value::is_string) => {}
        Some(_) => return wrong("error", "an object with a \"code\" and a \"message\""),
    }
    match v.get("literal") {
        None | Some(Value::Bool(_)) => {}
        Some(_) => return wrong("literal", "true or false"),
    }
    if let Some(c) = v.get("check-results") {
        if let Err(e) = steward_backend::CheckSummary::parse(c) {
            return Err(format!(
                "its \"check-results\" are not Tahoe's check results ({e})"
            ));
        }
    }
    if let Some(c) = v.get("check-and-repair-results") {
        if let Err(e) = RepairResults::from_json(c.clone()) {
            return Err(format!(
                "its \"check-and-repair-results\" are not Tahoe's check-and-repair results ({e})"
            ));
        }
    }
    match v.get("repair") {
        None => {}
        Some(r) if serde_json::from_value::<RepairNote>(r.clone()).is_ok() => {}
        Some(_) => {
            return wrong(
                "repair",
                "an object with an \"action\" (repaired, would-repair, not-repairable or skipped) and a \"reason\"",
            )
        }
    }
    Ok(())
}

/// Where traversal units go. A file, a channel to the next stage, or both.
#[async_trait]
pub trait UnitSink: Send {
    /// Take one unit, in emission order.
    async fn emit(&mut self, unit: Unit) -> Result<()>;
    /// Make every unit emitted so far durable; returns the output length
    /// to record in the checkpoint (0 when nothing is durable).
    async fn sync(&mut self) -> Result<u64>;
}

/// Serialize as JSON the way Tahoe's Python writes its units
/// (`json.dumps(..., ensure_ascii=True)`): every non-ASCII character escaped
/// (`\uXXXX`, with surrogate pairs) and `", "` / `": "` separators, so that
/// steward's units are byte-for-byte those of Tahoe for the same object.
pub fn to_ascii_json<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::with_capacity(256);
    write_ascii_json(&mut out, value).expect("serializing a unit to memory cannot fail");
    String::from_utf8(out).expect("ASCII output")
}

/// [`to_ascii_json`] written to `w`.
fn write_ascii_json<W: io::Write, T: Serialize + ?Sized>(w: &mut W, value: &T) -> io::Result<()> {
    let mut ser = serde_json::Serializer::with_formatter(w, AsciiFormatter);
    value.serialize(&mut ser).map_err(io::Error::from)
}

struct AsciiFormatter;

/// Python's item separator, before every item but the first.
fn separator<W: ?Sized + io::Write>(w: &mut W, first: bool) -> io::Result<()> {
    if first {
        Ok(())
    } else {
        w.write_all(b", ")
    }
}

impl serde_json::ser::Formatter for AsciiFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        separator(w, first)
    }
    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        separator(w, first)
    }
    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, ch) in fragment.char_indices() {
            if ch.is_ascii() {
                continue;
            }
            writer.write_all(&fragment.as_bytes()[start..i])?;
            let mut buf = [0u16; 2];
            for unit in ch.encode_utf16(&mut buf) {
                write!(writer, "\\u{:04x}", unit)?;
            }
            start = i + ch.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_json_escapes_like_python() {
        // json.dumps(["é", "😀", "a\"b"], ensure_ascii=True)
        assert_eq!(
            to_ascii_json(&["é", "😀", "a\"b"]),
            r#"["\u00e9", "\ud83d\ude00", "a\"b"]"#
        );
    }

    #[test]
    fn units_round_trip_and_bad_lines_are_explained() {
        let line = r#"{"path": ["x", "\u00e9"], "cap": "URI:LIT:aa", "type": "file", "verifycap": "", "repaircap": "", "storage-index": ""}"#;
        let u = Unit::parse(line).unwrap();
        match &u {
            Unit::Object(o) => {
                assert_eq!(o.object_type, ObjectType::File);
                assert_eq!(o.path, vec!["x".to_string(), "é".to_string()]);
            }
            _ => panic!("expected an object unit"),
        }
        assert_eq!(u.to_line(), line);
        let mut written = Vec::new();
        u.write_line(&mut written).unwrap();
        assert_eq!(written, format!("{line}\n").into_bytes());
        assert!(Unit::parse(r#"{"type":"file","path":["#)
            .unwrap_err()
            .contains("truncated"));
        assert!(Unit::parse("URI:CHK:abc").unwrap_err().contains("not JSON"));
        assert!(Unit::parse(r#"{"a":1}"#).unwrap_err().contains("type"));
        let s = Unit::parse(r#"{"type":"stats","stats":{"count-files":3}}"#).unwrap();
        assert_eq!(s, Unit::Stats(serde_json::json!({"count-files": 3}), None));
        let line = r#"{"type": "stats", "stats": {"count-files": 3}, "subset": {"objects": 1}}"#;
        let s = Unit::parse(line).unwrap();
        assert_eq!(
            s,
            Unit::Stats(
                serde_json::json!({"count-files": 3}),
                Some(Subset { objects: 1 })
            )
        );
        assert_eq!(s.to_line(), line, "written back as read");
        assert!(
            Unit::parse(r#"{"type": "stats", "stats": {}, "subset": 3}"#)
                .unwrap_err()
                .contains("subset")
        );
    }

    #[test]
    fn parse_errors_never_quote_a_value() {
        let secret = "URI:SSK:kd4gn2eutfl7ddk5oxnfbshjsy:eq6zm3mjjhz4vjl6drfw5ap5tcwnuihjcmlgovcgedk2vaykpena";
        let lines = [
            format!(r#"{{"type": "file", "path": "{secret}"}}"#),
            format!(r#"{{"type": "file", "path": ["{secret}", 3]}}"#),
            format!(r#"{{"type": "file", "path": [], "cap": ["{secret}"]}}"#),
            format!(r#"{{"type": "file", "path": [], "cap": 7, "verifycap": "{secret}"}}"#),
            format!(r#"{{"type": "file", "path": [], "error": "{secret}"}}"#),
            format!(r#"{{"type": "file", "path": [], "error": {{"code": "{secret}"}}}}"#),
            format!(r#"{{"type": "file", "path": [], "literal": "{secret}"}}"#),
            format!(r#"{{"type": "{secret}", "path": []}}"#),
            format!(r#"{{"type": "file", "path": [], "cap": "{secret}\q"}}"#),
            format!(r#"{{"type": "file", "path": ["{secret}"] "cap": 1}}"#),
        ];
        for l in &lines {
            let e = Unit::parse(l).unwrap_err();
            assert!(!e.contains("kd4gn2eu") && !e.contains("eq6zm3mj"), "{e}");
        }
        assert!(Unit::parse(&lines[0]).unwrap_err().contains("\"path\""));
        assert!(Unit::parse(&lines[2]).unwrap_err().contains("\"cap\""));
    }
}
