//! ASFF as a stream: every piece the framer finds becomes a finding or a rejection as soon as
//! it is read, so memory does not grow with the file.

use std::io::Read;
use std::ops::ControlFlow;

use bytes::Bytes;
use time::OffsetDateTime;

use super::frame::{Framer, Position};
use super::{DecodeEnd, DecodeError, DecodeSummary, Decoded, MAX_READ_PIECE, RejectedFinding};
use crate::finding::{self, Defaults, MAX_FINDING_BYTES, Rejection};

/// Decodes an ASFF stream, handing each item to `sink` as soon as it is read.
pub fn decode<R: Read>(
    reader: R,
    defaults: &Defaults,
    now: OffsetDateTime,
    mut sink: impl FnMut(Decoded) -> ControlFlow<()>,
) -> Result<DecodeEnd, DecodeError> {
    let mut framer = Framer::new(reader, MAX_READ_PIECE);
    let mut summary = DecodeSummary::default();
    let mut index = 0u64;
    while let Some(frame) = framer.next_frame()? {
        let item = match finding::prepare(frame.bytes, defaults, now) {
            Ok(f) => {
                summary.findings += 1;
                Decoded::Finding(f)
            }
            Err(Rejection::Syntax(e)) => {
                let at = Position { offset: frame.offset, line: frame.line, column: 1 };
                return Err(DecodeError::Syntax { at, message: e.to_string() });
            }
            Err(rejection) => {
                summary.rejected += 1;
                Decoded::Rejected(RejectedFinding {
                    index,
                    line: frame.line,
                    id: id_of(frame.bytes),
                    rejection,
                    raw: Bytes::copy_from_slice(frame.bytes),
                })
            }
        };
        index += 1;
        if sink(item).is_break() {
            return Ok(DecodeEnd::Stopped);
        }
    }
    Ok(DecodeEnd::Complete(summary))
}

/// The `Id` of a rejected piece, for the report; best effort.
fn id_of(raw: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        #[serde(rename = "Id")]
        id: String,
    }
    if raw.len() > MAX_FINDING_BYTES * 8 {
        return None;
    }
    serde_json::from_slice::<IdOnly>(raw).ok().map(|x| x.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::Defaults;
    use serde_json::json;

    fn defaults() -> Defaults {
        Defaults {
            region: "us-east-1".into(),
            account_id: Some("111122223333".into()),
            product_arn: None,
            routes: vec![],
        }
    }

    fn finding(id: &str) -> serde_json::Value {
        json!({
            "Id": id, "GeneratorId": "g", "Types": ["t/x"], "Severity": {"Label": "LOW"},
            "Title": "t", "Description": "d", "Resources": [{"Type": "Other", "Id": "r"}],
        })
    }

    /// Accepted Ids, and (code, Id) of each rejection.
    type Outcome = (Vec<String>, Vec<(String, Option<String>)>);

    fn run(input: &[u8]) -> Result<Outcome, DecodeError> {
        let (mut ok, mut bad) = (vec![], vec![]);
        let now = OffsetDateTime::UNIX_EPOCH;
        decode(input, &defaults(), now, |d| {
            match d {
                Decoded::Finding(f) => ok.push(f.id),
                Decoded::Rejected(r) => bad.push((r.rejection.code().to_owned(), r.id)),
            }
            ControlFlow::Continue(())
        })?;
        Ok((ok, bad))
    }

    #[test]
    fn each_asff_shape_decodes() {
        let (a, b) = (finding("a"), finding("b"));
        for input in
            [json!([a, b]).to_string(), json!({"Findings": [a, b]}).to_string(), format!("{a}\n{b}\n")]
        {
            assert_eq!(run(input.as_bytes()).unwrap().0, ["a", "b"], "{input}");
        }
        assert_eq!(run(a.to_string().as_bytes()).unwrap().0, ["a"]);
    }

    #[test]
    fn bad_finding_is_rejected_alone() {
        let mut big = finding("big");
        big["ProductFields"] = json!({"x": "y".repeat(MAX_FINDING_BYTES)});
        let mut no_title = finding("untitled");
        no_title.as_object_mut().unwrap().remove("Title");
        let input = json!([finding("a"), big, no_title, 5, finding("b")]).to_string();
        let (ok, bad) = run(input.as_bytes()).unwrap();
        assert_eq!(ok, ["a", "b"]);
        assert_eq!(
            bad,
            [
                ("FindingTooLarge".to_owned(), Some("big".to_owned())),
                ("MissingField".to_owned(), Some("untitled".to_owned())),
                ("NotAnObject".to_owned(), None),
            ]
        );
    }

    #[test]
    fn invalid_json_inside_a_piece_fails_the_file_with_position() {
        let input = format!("{}\n{{\"Id\": tru}}\n", finding("a"));
        let err = run(input.as_bytes()).unwrap_err().to_string();
        assert!(err.starts_with("invalid JSON in the value that starts at line 2"), "{err}");
        let err = run(b"[{\"Id\":\"\xff\"}]").unwrap_err().to_string();
        assert!(err.contains("invalid JSON"), "{err}");
    }

    /// Every ASFF fixture, with what Security Hub's rules make of it (see the fixtures' PROVENANCE.md:
    /// some carry placeholder account ids or empty `Types` on purpose).
    #[test]
    fn fixtures_of_every_asff_shape_decode() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/scanners/asff");
        let expected: &[(&str, usize, &[&str])] = &[
            ("awsdocs-sample-finding-fsbp.json", 1, &[]),
            ("inspector-one_vuln.array.json", 1, &[]),
            ("prowler-docs-example.array.json", 0, &["InvalidField"]),
            ("securityhub-inspector_ec2_cve.findings.json", 1, &["InvalidField"; 4]),
            ("trivy-alpine-310.asff.json", 4, &[]),
            ("trivy-secrets.asff.json", 2, &[]),
        ];
        for (name, accepted, rejected) in expected {
            let bytes = std::fs::read(dir.join(name)).unwrap();
            let (ok, bad) = run(&bytes).unwrap();
            let codes: Vec<&str> = bad.iter().map(|(c, _)| c.as_str()).collect();
            assert_eq!((ok.len(), &codes[..]), (*accepted, *rejected), "{name}: {bad:?}");
            assert_eq!(ok.len() + bad.len(), count_findings(&bytes), "{name}");
        }
    }
    fn count_findings(bytes: &[u8]) -> usize {
        match serde_json::from_slice::<serde_json::Value>(bytes).unwrap() {
            serde_json::Value::Array(a) => a.len(),
            serde_json::Value::Object(o) => {
                o.get("Findings").and_then(|f| f.as_array()).map_or(1, |a| a.len())
            }
            _ => 0,
        }
    }
}
