//! Bytes → findings. The format is detected from the content ([`detect`]); ASFF is read as a
//! stream of pieces ([`frame`], [`asff`]), scanner reports are converted whole by a pure function
//! each ([`trivy`], [`grype`], [`sarif`], [`xccdf`], sharing [`build`]). Every finding then passes
//! the same validation; a bad finding is rejected alone, a broken file as a whole.

pub mod asff;
pub mod build;
pub mod detect;
pub mod frame;
pub mod grype;
pub mod sarif;
pub mod trivy;
pub mod xccdf;

use std::io::{Read, Seek};
use std::ops::ControlFlow;

use bytes::Bytes;
use time::OffsetDateTime;

use crate::finding::{self, Defaults, Finding, Rejection};
pub use detect::Format;
use frame::{FrameError, Position};

/// Scanner reports (not ASFF) are read whole; larger ones are refused rather than risk memory.
pub const MAX_DOCUMENT_BYTES: u64 = 64 * 1024 * 1024;

/// Pieces larger than this are not even read: the file is malformed rather than one finding too
/// large. Findings between 240 KB and this size are read and dead-lettered one by one.
pub const MAX_READ_PIECE: usize = 16 * 1024 * 1024;

/// What a file yields, one item at a time.
#[derive(Debug)]
pub enum Decoded {
    /// A finding ready to queue.
    Finding(Finding),
    /// A finding that cannot be sent, with its raw text.
    Rejected(RejectedFinding),
}

/// A piece of a file that is not a valid finding.
#[derive(Debug)]
pub struct RejectedFinding {
    /// 0-based position among the file's pieces.
    pub index: u64,
    /// Where it starts.
    pub line: u64,
    /// Its `Id`, when it has a readable one.
    pub id: Option<String>,
    /// Why.
    pub rejection: Rejection,
    /// The raw text, for the dead-letter file.
    pub raw: Bytes,
}

/// Why a whole file cannot be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Broken structure, truncation, an oversized piece or a read error.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A piece that is not valid JSON.
    #[error("invalid JSON in the value that starts at {at}: {message}")]
    Syntax {
        /// Where the value starts.
        at: Position,
        /// serde_json's message (its line/column are within the value).
        message: String,
    },
    /// The content matches no format the agent reads.
    #[error("not a format the agent reads; tried {}", detect::TRIED)]
    Unknown,
    /// Nothing but whitespace: a scanner that failed before writing its report, most likely.
    #[error("the file is empty ({0} bytes, nothing but whitespace); did the scanner fail?")]
    Empty(usize),
    /// A scanner report that does not have the structure of its format.
    #[error("{format} report: {message}")]
    Document {
        /// The detected format.
        format: Format,
        /// What is wrong, with the position where the parser has one.
        message: String,
    },
    /// A scanner report over [`MAX_DOCUMENT_BYTES`].
    #[error(
        "{format} report of {size} bytes is over the {MAX_DOCUMENT_BYTES}-byte limit for scanner reports; split it"
    )]
    TooLarge {
        /// The detected format.
        format: Format,
        /// Its size.
        size: u64,
    },
}

/// How to convert scanner reports.
#[derive(Debug, Clone)]
pub struct Options {
    /// Defaults filled into every finding.
    pub defaults: Defaults,
    /// The default resource and the scan time for reports without one.
    pub context: build::Context,
    /// Report XCCDF rules that passed too.
    pub include_passed: bool,
}

/// Counts for the log line, and the report's scope.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DecodeSummary {
    /// The scan scope of a complete scanner report (see `[lifecycle]`).
    pub scope: Option<build::Scope>,
    /// Findings handed on.
    pub findings: u64,
    /// Pieces rejected.
    pub rejected: u64,
    /// Texts and lists cut to fit ASFF limits.
    pub truncations: u32,
}

/// Outcome of [`decode`]: finished, or stopped by the sink.
#[derive(Debug)]
pub enum DecodeEnd {
    /// The whole stream was read.
    Complete(DecodeSummary),
    /// The sink asked to stop (shutdown).
    Stopped,
}

/// Detects the format of `file` (unless `forced`) and decodes it, handing each item to `sink`.
pub fn decode<R: Read + Seek>(
    mut file: R,
    forced: Option<Format>,
    options: &Options,
    now: OffsetDateTime,
    sink: impl FnMut(Decoded) -> ControlFlow<()>,
) -> Result<(Format, DecodeEnd), DecodeError> {
    let mut head = [0u8; 4096];
    let mut len = 0;
    while len < head.len() {
        match file.read(&mut head[len..]).map_err(FrameError::Io)? {
            0 => break,
            n => len += n,
        }
    }
    if len < head.len() && head[..len].iter().all(u8::is_ascii_whitespace) {
        return Err(DecodeError::Empty(len));
    }
    file.rewind().map_err(FrameError::Io)?;
    let format = match forced {
        Some(f) => f,
        None => detect::detect(&mut file).map_err(FrameError::Io)?.ok_or(DecodeError::Unknown)?,
    };
    file.rewind().map_err(FrameError::Io)?;
    if format == Format::Asff {
        return asff::decode(file, &options.defaults, now, sink).map(|end| (format, end));
    }
    let mut bytes = Vec::new();
    (&mut file).take(MAX_DOCUMENT_BYTES + 1).read_to_end(&mut bytes).map_err(FrameError::Io)?;
    if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
        let size = bytes.len() as u64 + file_rest(&mut file);
        return Err(DecodeError::TooLarge { format, size });
    }
    let document = |message: String| DecodeError::Document { format, message };
    let ctx = &options.context;
    // Each finding goes on as soon as it is made: memory holds the report, not every finding.
    let mut hand = HandOver {
        defaults: &options.defaults,
        now,
        sink,
        summary: DecodeSummary::default(),
        index: 0,
        stopped: false,
    };
    let emit = &mut |v| hand.push(v);
    let converted = match format {
        Format::Trivy => trivy::convert_each(&bytes, ctx, emit).map_err(|e| document(e.to_string()))?,
        Format::Grype => grype::convert_each(&bytes, ctx, emit).map_err(|e| document(e.to_string()))?,
        Format::Sarif => sarif::convert_each(&bytes, ctx, emit).map_err(|e| document(e.to_string()))?,
        Format::Xccdf => xccdf::convert_each(&bytes, ctx, options.include_passed, emit)
            .map_err(|e| document(e.to_string()))?,
        Format::Asff => unreachable!("ASFF is streamed above"),
    };
    hand.summary.truncations = converted.truncations.0;
    hand.summary.scope = converted.scope;
    let end = if hand.stopped { DecodeEnd::Stopped } else { DecodeEnd::Complete(hand.summary) };
    Ok((format, end))
}

fn file_rest<R: Read>(file: &mut R) -> u64 {
    std::io::copy(file, &mut std::io::sink()).unwrap_or(0)
}

/// Validates converted findings and hands them to `sink` one by one.
struct HandOver<'a, S> {
    defaults: &'a Defaults,
    now: OffsetDateTime,
    sink: S,
    summary: DecodeSummary,
    index: u64,
    stopped: bool,
}

impl<S: FnMut(Decoded) -> ControlFlow<()>> HandOver<'_, S> {
    fn push(&mut self, value: serde_json::Value) -> ControlFlow<()> {
        let raw = serde_json::to_vec(&value).expect("a Value always serializes");
        let item = match finding::prepare(&raw, self.defaults, self.now) {
            Ok(f) => {
                self.summary.findings += 1;
                Decoded::Finding(f)
            }
            Err(rejection) => {
                self.summary.rejected += 1;
                let id = value.get("Id").and_then(|v| v.as_str()).map(str::to_owned);
                Decoded::Rejected(RejectedFinding {
                    index: self.index,
                    line: 0,
                    id,
                    rejection,
                    raw: Bytes::from(raw),
                })
            }
        };
        self.index += 1;
        let flow = (self.sink)(item);
        self.stopped |= flow.is_break();
        flow
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn options() -> Options {
        Options {
            defaults: Defaults {
                region: "eu-west-1".into(),
                account_id: Some("111122223333".into()),
                product_arn: None,
                routes: vec![],
            },
            context: build::Context::for_host("eu-west-1", None, None, "h", "2026-01-01T00:00:00Z".into()),
            include_passed: true,
        }
    }

    fn fixture_bytes() -> Vec<Vec<u8>> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/scanners");
        let mut out = Vec::new();
        for dir in ["asff", "trivy", "grype", "sarif", "xccdf"] {
            for e in std::fs::read_dir(root.join(dir)).unwrap() {
                let p = e.unwrap().path();
                if p.extension().is_some_and(|x| x != "md") {
                    out.push(std::fs::read(p).unwrap());
                }
            }
        }
        out
    }

    /// Every decoder, detected or forced, on `bytes`: a `Result` either way, never a panic.
    fn decode_all_ways(bytes: &[u8]) {
        let formats = [
            None,
            Some(Format::Asff),
            Some(Format::Trivy),
            Some(Format::Grype),
            Some(Format::Sarif),
            Some(Format::Xccdf),
        ];
        for forced in formats {
            let _ =
                decode(std::io::Cursor::new(bytes), forced, &options(), OffsetDateTime::UNIX_EPOCH, |_| {
                    ControlFlow::Continue(())
                });
        }
    }

    #[test]
    fn an_empty_or_blank_file_is_an_error_but_an_empty_report_is_not() {
        let run = |bytes: &[u8]| {
            decode(std::io::Cursor::new(bytes), None, &options(), OffsetDateTime::UNIX_EPOCH, |_| {
                ControlFlow::Continue(())
            })
        };
        assert!(matches!(run(b""), Err(DecodeError::Empty(0))));
        assert!(matches!(run(b" \n\t\n"), Err(DecodeError::Empty(4))));
        assert!(run(b"[]").is_ok(), "a scanner that found nothing");
        assert!(run(b"{\"Findings\": []}").is_ok());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
            decode_all_ways(&bytes);
        }

        #[test]
        fn mutated_fixtures_never_panic(which in 0usize..20, cuts in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8), truncate in any::<prop::sample::Index>()) {
            let all = fixture_bytes();
            let mut bytes = all[which % all.len()].clone();
            for (at, byte) in cuts {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
            decode_all_ways(&bytes);
            let end = truncate.index(bytes.len());
            decode_all_ways(&bytes[..end]);
        }
    }
}
