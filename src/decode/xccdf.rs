//! OpenSCAP results → ASFF: XCCDF 1.1/1.2 result documents and ARF reports. Each `rule-result`
//! of each `TestResult` that is `fail` or `error` (and `pass`, when asked) becomes a finding;
//! title, description, severity, idents and fix text come from the Benchmark's `Rule`
//! (embedded in the ARF report's data stream when the input is ARF).

use std::collections::HashMap;
use std::ops::ControlFlow;

use quick_xml::events::{BytesStart, Event};
use serde_json::{Value, json};

use super::build::{
    Context, Converted, Head, REMEDIATION_MAX, Scope, Truncations, finding_id, label_from_word, scan_time,
};

/// The XML is not well formed.
#[derive(Debug, thiserror::Error)]
#[error("XML error at byte {position}: {message}")]
pub struct XmlError {
    /// Byte offset in the document.
    pub position: u64,
    /// quick-xml's message.
    pub message: String,
}

#[derive(Default, Debug)]
struct Rule {
    title: String,
    description: String,
    severity: Option<String>,
    fixtext: String,
    idents: Vec<String>,
}

#[derive(Default, Debug)]
struct RuleResult {
    idref: String,
    severity: Option<String>,
    result: String,
    idents: Vec<String>,
}

#[derive(Default, Debug)]
struct TestResult {
    id: String,
    end_time: Option<String>,
    target: String,
    profile: String,
    results: Vec<RuleResult>,
}

/// Which text is being collected.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    RuleTitle,
    RuleDescription,
    RuleFix,
    RuleIdent,
    Target,
    Result,
    ResultIdent,
}

fn attr(e: &BytesStart, name: &[u8]) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == name)
        .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
}

struct Parsed {
    rules: HashMap<String, Rule>,
    tests: Vec<TestResult>,
}

fn parse(bytes: &[u8]) -> Result<Parsed, XmlError> {
    let mut reader = quick_xml::Reader::from_reader(bytes);
    let mut rules: HashMap<String, Rule> = HashMap::new();
    let mut tests: Vec<TestResult> = Vec::new();
    let mut rule: Option<(String, Rule)> = None;
    let mut test: Option<TestResult> = None;
    let mut field: Option<(Field, usize)> = None; // the field and the depth it opened at
    let mut depth = 0usize;
    let mut text = String::new();
    let mut buf = Vec::new();
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| XmlError { position: reader.error_position(), message: e.to_string() })?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                let name = e.local_name();
                let in_test = test.is_some();
                match name.as_ref() {
                    b"Rule" if !in_test => {
                        rule = Some((
                            attr(e, b"id").unwrap_or_default(),
                            Rule { severity: attr(e, b"severity"), ..Rule::default() },
                        ))
                    }
                    b"TestResult" => {
                        test = Some(TestResult {
                            id: attr(e, b"id").unwrap_or_default(),
                            end_time: attr(e, b"end-time"),
                            ..TestResult::default()
                        })
                    }
                    b"profile" if in_test => {
                        test.as_mut().expect("in a test").profile = attr(e, b"idref").unwrap_or_default()
                    }
                    b"rule-result" if in_test => test.as_mut().expect("in a test").results.push(RuleResult {
                        idref: attr(e, b"idref").unwrap_or_default(),
                        severity: attr(e, b"severity"),
                        ..RuleResult::default()
                    }),
                    _ => {}
                }
                if field.is_none() && !empty {
                    let open = match (name.as_ref(), rule.is_some(), in_test) {
                        (b"title", true, _) => Some(Field::RuleTitle),
                        (b"description", true, _) => Some(Field::RuleDescription),
                        (b"fixtext", true, _) => Some(Field::RuleFix),
                        (b"ident", true, _) => Some(Field::RuleIdent),
                        (b"target", _, true) => Some(Field::Target),
                        (b"result", _, true) => Some(Field::Result),
                        (b"ident", _, true) => Some(Field::ResultIdent),
                        _ => None,
                    };
                    if let Some(f) = open {
                        field = Some((f, depth));
                        text.clear();
                    }
                }
                if !empty {
                    depth += 1;
                }
            }
            Event::Text(t) if field.is_some() => {
                let s = t
                    .decode()
                    .map_err(|e| XmlError { position: reader.buffer_position(), message: e.to_string() })?;
                text.push_str(&s);
            }
            Event::CData(t) if field.is_some() => text.push_str(&String::from_utf8_lossy(&t)),
            Event::GeneralRef(r) if field.is_some() => {
                // `&amp;`, `&#169;`: quick-xml reports references apart from the text around them.
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    text.push(c);
                } else {
                    let name = r.decode().unwrap_or_default();
                    text.push_str(quick_xml::escape::resolve_predefined_entity(&name).unwrap_or(""));
                }
            }
            Event::End(ref e) => {
                depth = depth.saturating_sub(1);
                if let Some((f, at)) = field {
                    if at == depth {
                        let value = text.split_whitespace().collect::<Vec<_>>().join(" ");
                        store(f, value, rule.as_mut().map(|(_, r)| r), test.as_mut());
                        field = None;
                    } else if f == Field::RuleDescription {
                        text.push(' ');
                    }
                }
                match e.local_name().as_ref() {
                    b"Rule" if field.is_none() => {
                        if let Some((id, r)) = rule.take() {
                            rules.insert(id, r);
                        }
                    }
                    b"TestResult" => tests.extend(test.take()),
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    Ok(Parsed { rules, tests })
}

fn store(f: Field, value: String, rule: Option<&mut Rule>, test: Option<&mut TestResult>) {
    match (f, rule, test) {
        (Field::RuleTitle, Some(r), _) if r.title.is_empty() => r.title = value,
        (Field::RuleDescription, Some(r), _) if r.description.is_empty() => r.description = value,
        (Field::RuleFix, Some(r), _) if r.fixtext.is_empty() => r.fixtext = value,
        (Field::RuleIdent, Some(r), _) => r.idents.push(value),
        (Field::Target, _, Some(t)) if t.target.is_empty() => t.target = value,
        (Field::Result, _, Some(t)) => {
            if let Some(rr) = t.results.last_mut() {
                rr.result = value;
            }
        }
        (Field::ResultIdent, _, Some(t)) => {
            if let Some(rr) = t.results.last_mut() {
                rr.idents.push(value);
            }
        }
        _ => {}
    }
}

/// Converts a document, handing each finding to `emit` as it is made; stops when `emit` says so.
pub fn convert_each(
    bytes: &[u8],
    ctx: &Context,
    include_pass: bool,
    emit: &mut dyn FnMut(Value) -> ControlFlow<()>,
) -> Result<Converted, XmlError> {
    let parsed = parse(bytes)?;
    let scope = parsed.tests.first().map(|t| Scope {
        key: format!("openscap|{}|{}", t.target, t.profile),
        scanned: scan_time(t.end_time.as_deref(), &ctx.now),
    });
    let mut t = Truncations::default();
    let empty = Rule::default();
    for test in &parsed.tests {
        let scanned = scan_time(test.end_time.as_deref(), &ctx.now);
        for rr in &test.results {
            let status = match rr.result.as_str() {
                "fail" => "FAILED",
                "error" => "NOT_AVAILABLE",
                "pass" if include_pass => "PASSED",
                _ => continue,
            };
            let rule = parsed.rules.get(&rr.idref).unwrap_or(&empty);
            let severity = rr.severity.as_deref().or(rule.severity.as_deref()).unwrap_or("unknown");
            let label = if status == "PASSED" {
                "INFORMATIONAL"
            } else {
                label_from_word(severity).unwrap_or("INFORMATIONAL")
            };
            let mut idents = rule.idents.clone();
            idents.extend(rr.idents.iter().filter(|i| !rule.idents.contains(i)).cloned());
            let title = if rule.title.is_empty() { rr.idref.clone() } else { rule.title.clone() };
            let description = if rule.description.is_empty() {
                format!("XCCDF rule {} ({})", rr.idref, rr.result)
            } else {
                rule.description.clone()
            };
            let generator =
                format!("openscap/{}", if test.profile.is_empty() { "default" } else { &test.profile });
            let head = Head {
                id: finding_id("openscap", &[&test.target, &test.profile, &rr.idref]),
                generator: &generator,
                types: &["Software and Configuration Checks/Industry and Regulatory Standards"],
                label,
                title: &title,
                description: &description,
                scanned: &scanned,
            };
            let mut f = t.finding(head, ctx);
            f["Severity"]["Original"] = json!(severity);
            f["Compliance"] = json!({"Status": status});
            let related = t.list(idents.clone(), 32);
            if !related.is_empty() {
                f["Compliance"]["RelatedRequirements"] = json!(related);
            }
            if !rule.fixtext.is_empty() {
                f["Remediation"] =
                    json!({"Recommendation": {"Text": t.text(&rule.fixtext, REMEDIATION_MAX)}});
            }
            f["ProductFields"] = t.product_fields([
                ("openscap/Rule", rr.idref.clone()),
                ("openscap/Result", rr.result.clone()),
                ("openscap/Profile", test.profile.clone()),
                ("openscap/Target", test.target.clone()),
                ("openscap/TestResult", test.id.clone()),
                ("openscap/Idents", idents.join(", ")),
            ]);
            if emit(f).is_break() {
                return Ok(Converted { truncations: t, scope });
            }
        }
    }
    Ok(Converted { truncations: t, scope })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(
        bytes: &[u8],
        ctx: &Context,
        include_pass: bool,
    ) -> Result<(Vec<Value>, Truncations), XmlError> {
        super::super::build::collect(|emit| convert_each(bytes, ctx, include_pass, emit))
    }

    const DOC: &str = r#"<?xml version="1.0"?>
<Benchmark xmlns="http://checklists.nist.gov/xccdf/1.2" xmlns:h="http://www.w3.org/1999/xhtml" id="b">
  <Group id="g"><Rule id="r1" severity="high">
    <title>Disable &amp; remove telnet</title>
    <description>Telnet is <h:code>cleartext</h:code> &#8212; remove it.</description>
    <ident system="https://ncp.nist.gov/cce">CCE-1234-5</ident>
    <fixtext>apt-get purge telnetd</fixtext>
  </Rule>
  <Rule id="r2" severity="low"><title>Other</title></Rule></Group>
  <TestResult id="t1" end-time="2026-01-02T03:04:05">
    <profile idref="p1"/><target>web-1</target>
    <rule-result idref="r1"><result>fail</result></rule-result>
    <rule-result idref="r2"><result>pass</result></rule-result>
    <rule-result idref="r3" severity="medium"><result>error</result></rule-result>
  </TestResult>
</Benchmark>"#;

    fn ctx() -> Context {
        Context::for_host("eu-west-1", None, None, "web-1", "2026-11-29T00:00:00Z".into())
    }

    #[test]
    fn failed_and_errored_rules_become_findings_with_rule_text() {
        let (findings, _) = convert(DOC.as_bytes(), &ctx(), false).unwrap();
        assert_eq!(findings.len(), 2);
        let f = &findings[0];
        assert_eq!(f["Title"], "Disable & remove telnet");
        assert_eq!(f["Description"], "Telnet is cleartext \u{2014} remove it.");
        assert_eq!(f["Severity"]["Label"], "HIGH");
        assert_eq!(
            f["Compliance"],
            serde_json::json!({"Status": "FAILED", "RelatedRequirements": ["CCE-1234-5"]})
        );
        assert_eq!(f["Remediation"]["Recommendation"]["Text"], "apt-get purge telnetd");
        assert_eq!(f["UpdatedAt"], "2026-01-02T03:04:05Z");
        let e = &findings[1];
        assert_eq!((e["Title"].as_str(), e["Severity"]["Label"].as_str()), (Some("r3"), Some("MEDIUM")));
        assert_eq!(e["Compliance"]["Status"], "NOT_AVAILABLE");
    }

    #[test]
    fn passes_only_when_asked() {
        let (findings, _) = convert(DOC.as_bytes(), &ctx(), true).unwrap();
        assert_eq!(findings.len(), 3);
        assert_eq!(findings[1]["Compliance"]["Status"], "PASSED");
    }

    #[test]
    fn broken_xml_is_an_error_with_position() {
        let err = convert(b"<Benchmark><Rule></Benchmark>", &ctx(), false).unwrap_err();
        assert!(err.to_string().starts_with("XML error at byte"), "{err}");
    }
}
