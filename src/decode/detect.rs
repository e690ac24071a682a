//! Which format a file is in, from its content (never its name): a look at the first bytes, and
//! for a JSON object the names of its top-level keys, read as a stream without keeping values.

use std::fmt;
use std::io::Read;

use serde::Deserialize;
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

/// The formats the agent reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// AWS Security Finding Format: object, array, `{"Findings":[...]}` or NDJSON.
    Asff,
    /// Trivy JSON report, `SchemaVersion: 2`.
    Trivy,
    /// Grype JSON report.
    Grype,
    /// SARIF 2.1.0 log.
    Sarif,
    /// OpenSCAP XCCDF 1.1/1.2 results or an ARF report.
    Xccdf,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Asff => "ASFF",
            Format::Trivy => "Trivy JSON",
            Format::Grype => "Grype JSON",
            Format::Sarif => "SARIF",
            Format::Xccdf => "XCCDF/ARF",
        })
    }
}

/// What was tried, for the quarantine report of a file that matches nothing.
pub const TRIED: &str = "ASFF (object, array, {\"Findings\":[...]}, NDJSON), Trivy JSON (SchemaVersion 2), \
Grype JSON, SARIF 2.1.0, OpenSCAP XCCDF 1.1/1.2 results and ARF";

/// The top-level keys of a JSON object, and the few small values detection looks at.
#[derive(Debug, Default)]
pub struct TopKeys {
    keys: Vec<String>,
    schema_version: Option<Value>,
    version: Option<Value>,
    schema: Option<Value>,
}

impl TopKeys {
    fn has(&self, k: &str) -> bool {
        self.keys.iter().any(|x| x == k)
    }
}

impl<'de> Deserialize<'de> for TopKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TopKeys;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopKeys, A::Error> {
                let mut top = TopKeys::default();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "SchemaVersion" => top.schema_version = Some(map.next_value()?),
                        "version" => top.version = Some(map.next_value()?),
                        "$schema" => top.schema = Some(map.next_value()?),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                    top.keys.push(key);
                }
                Ok(top)
            }
        }
        d.deserialize_map(V)
    }
}

/// Decides from the first non-blank byte and, for an object, its top-level keys. `None`: no match.
pub fn classify(first: u8, head: &[u8], keys: Option<&TopKeys>) -> Option<Format> {
    match first {
        b'[' => Some(Format::Asff),
        b'<' => {
            let head = String::from_utf8_lossy(head);
            let xccdf = head.contains("asset-report-collection")
                || head.contains("checklists.nist.gov/xccdf")
                || head.contains("<Benchmark")
                || head.contains("TestResult");
            xccdf.then_some(Format::Xccdf)
        }
        b'{' => {
            let Some(k) = keys else { return Some(Format::Asff) }; // broken JSON: let the ASFF framer say where
            let text = |v: &Option<Value>| v.as_ref().and_then(Value::as_str).unwrap_or_default().to_owned();
            if k.has("Findings") || k.has("findings") {
                Some(Format::Asff)
            } else if k.schema_version.as_ref().and_then(Value::as_u64) == Some(2)
                && (k.has("Results") || k.has("ArtifactName"))
            {
                Some(Format::Trivy)
            } else if k.has("matches") && (k.has("descriptor") || k.has("source")) {
                Some(Format::Grype)
            } else if k.has("runs")
                && (text(&k.version).starts_with("2.1") || text(&k.schema).contains("sarif"))
            {
                Some(Format::Sarif)
            } else if text(&k.schema_version) == crate::finding::SCHEMA_VERSION
                || k.has("GeneratorId")
                || (k.has("Id") && k.has("Title"))
            {
                Some(Format::Asff)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Reads the start of `reader` and says what it is. The reader is consumed; reopen or seek after.
pub fn detect<R: Read>(mut reader: R) -> std::io::Result<Option<Format>> {
    let mut head = vec![0u8; 64 * 1024];
    let mut filled = 0;
    while filled < head.len() {
        match reader.read(&mut head[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    head.truncate(filled);
    let start = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&head);
    let Some(&first) = start.iter().find(|b| !b.is_ascii_whitespace()) else { return Ok(Some(Format::Asff)) };
    let keys = if first == b'{' {
        // serde_json reads a reader byte by byte: buffer it, or a large report costs a
        // read(2) per byte (4.6 million for a 4.6 MB Trivy report, seen in strace).
        let rest =
            std::io::Cursor::new(start.to_vec()).chain(std::io::BufReader::with_capacity(64 * 1024, reader));
        TopKeys::deserialize(&mut serde_json::Deserializer::from_reader(rest)).ok()
    } else {
        None
    };
    Ok(classify(first, start, keys.as_ref()))
}

/// `*` matches any run of characters, `?` any one; everything else itself.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts `read` calls, as the kernel would count read(2) on a file.
    struct Counting<'a>(&'a [u8], usize);
    impl Read for Counting<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.1 += 1;
            self.0.read(buf)
        }
    }

    #[test]
    fn a_large_report_is_detected_with_buffered_reads() {
        let mut doc = String::from("{\"SchemaVersion\": 2, \"Results\": [");
        for i in 0..20_000 {
            doc.push_str(&format!("{{\"Target\": \"t{i}\", \"Vulnerabilities\": []}},"));
        }
        doc.push_str("{}]}");
        let mut reader = Counting(doc.as_bytes(), 0);
        assert_eq!(detect(&mut reader).unwrap(), Some(Format::Trivy));
        assert!(reader.1 < 100, "{} reads for {} bytes", reader.1, doc.len());
    }

    fn d(text: &str) -> Option<Format> {
        detect(text.as_bytes()).unwrap()
    }

    #[test]
    fn detects_each_format_by_content() {
        assert_eq!(d(r#"{"SchemaVersion": 2, "ArtifactName": "x", "Results": []}"#), Some(Format::Trivy));
        assert_eq!(d(r#"{"matches": [], "source": {}, "descriptor": {}}"#), Some(Format::Grype));
        assert_eq!(d(r#"{"version": "2.1.0", "runs": []}"#), Some(Format::Sarif));
        assert_eq!(
            d(r#"{"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "runs": []}"#),
            Some(Format::Sarif)
        );
        assert_eq!(d(r#"{"Findings": []}"#), Some(Format::Asff));
        assert_eq!(d(r#"[{"a":1}]"#), Some(Format::Asff));
        assert_eq!(
            d("{\"SchemaVersion\": \"2018-10-08\", \"Id\": \"x\"}\n{\"Id\": \"y\"}"),
            Some(Format::Asff)
        );
        assert_eq!(
            d("\u{feff}  <?xml version=\"1.0\"?><Benchmark xmlns=\"http://checklists.nist.gov/xccdf/1.2\">"),
            Some(Format::Xccdf)
        );
        assert_eq!(d("<arf:asset-report-collection>"), Some(Format::Xccdf));
        assert_eq!(d(""), Some(Format::Asff), "an empty file is an empty ASFF stream");
    }

    #[test]
    fn unknown_content_matches_nothing() {
        assert_eq!(d(r#"{"hello": "world"}"#), None);
        assert_eq!(d("<html><body>hi</body></html>"), None);
        assert_eq!(d("plain text"), None);
        assert_eq!(d(r#"{"SchemaVersion": 3, "Results": []}"#), None);
    }

    #[test]
    fn broken_json_goes_to_the_asff_framer_for_a_positioned_error() {
        assert_eq!(d(r#"{"Id": "x", "Title": tru"#), Some(Format::Asff));
    }

    #[test]
    fn keys_beyond_the_first_64_kib_are_seen() {
        let big = format!(r#"{{"matches": [{{"x": "{}"}}], "descriptor": {{}}}}"#, "y".repeat(200_000));
        assert_eq!(d(&big), Some(Format::Grype));
    }

    #[test]
    fn fixtures_are_detected_as_their_format() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/scanners");
        for (dir, format) in [
            ("asff", Format::Asff),
            ("trivy", Format::Trivy),
            ("grype", Format::Grype),
            ("sarif", Format::Sarif),
            ("xccdf", Format::Xccdf),
        ] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e != "md") {
                    let got = detect(std::fs::File::open(&path).unwrap()).unwrap();
                    assert_eq!(got, Some(format), "{}", path.display());
                }
            }
        }
    }

    #[test]
    fn glob_patterns() {
        assert!(glob_match("*.sarif", "codeql.sarif"));
        assert!(!glob_match("*.sarif", "codeql.sarif.json"));
        assert!(glob_match("trivy-*.json", "trivy-web-1.json"));
        assert!(glob_match("report?.xml", "report1.xml"));
        assert!(!glob_match("report?.xml", "report12.xml"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "aXXbYYc"));
    }
}
