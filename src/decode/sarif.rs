//! SARIF 2.1.0 → ASFF: every result of every run. Severity from `security-severity` (result or
//! rule), else the result's `level`, else the rule's default level (SARIF's default: warning).
//! Fingerprints, when present, identify the result; otherwise its location and message do.

use std::collections::BTreeMap;

use std::ops::ControlFlow;

use serde::Deserialize;
use serde_json::{Value, json};

use super::build::{
    Context, Converted, Head, REMEDIATION_MAX, Truncations, finding_id, label_from_score, label_from_word,
    scan_time,
};

#[derive(Deserialize)]
struct Log {
    runs: Vec<Run>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Run {
    tool: Tool,
    #[serde(default)]
    results: Vec<SarifResult>,
    #[serde(default)]
    invocations: Vec<Invocation>,
}

#[derive(Deserialize)]
struct Tool {
    driver: Driver,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Driver {
    name: String,
    version: Option<String>,
    semantic_version: Option<String>,
    #[serde(default)]
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Invocation {
    end_time_utc: Option<String>,
}

#[derive(Deserialize, Default)]
struct Text {
    text: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    id: String,
    name: Option<String>,
    #[serde(default)]
    short_description: Text,
    #[serde(default)]
    full_description: Text,
    #[serde(default)]
    help: Text,
    help_uri: Option<String>,
    default_configuration: Option<RuleConfig>,
    #[serde(default)]
    properties: Properties,
}

#[derive(Deserialize)]
struct RuleConfig {
    level: Option<String>,
}

#[derive(Deserialize, Default)]
struct Properties {
    #[serde(rename = "security-severity")]
    security_severity: Option<Value>,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SarifResult {
    rule_id: Option<String>,
    rule_index: Option<usize>,
    rule: Option<RuleRef>,
    level: Option<String>,
    #[serde(default)]
    message: Text,
    #[serde(default)]
    locations: Vec<SarifLocation>,
    #[serde(default)]
    partial_fingerprints: BTreeMap<String, String>,
    #[serde(default)]
    fingerprints: BTreeMap<String, String>,
    #[serde(default)]
    properties: Properties,
}

#[derive(Deserialize)]
struct RuleRef {
    id: Option<String>,
    index: Option<usize>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SarifLocation {
    physical_location: Option<Physical>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Physical {
    artifact_location: Option<ArtifactLocation>,
    region: Option<Region>,
}

#[derive(Deserialize)]
struct ArtifactLocation {
    uri: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Region {
    start_line: Option<u64>,
    start_column: Option<u64>,
}

/// `security-severity` is a string ("7.5") in most tools, a number in some.
fn score(v: &Option<Value>) -> Option<f64> {
    match v.as_ref()? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Converts a log, handing each finding to `emit` as it is made; stops when `emit` says so.
pub fn convert_each(
    bytes: &[u8],
    ctx: &Context,
    emit: &mut dyn FnMut(Value) -> ControlFlow<()>,
) -> Result<Converted, serde_json::Error> {
    let log: Log = serde_json::from_slice(bytes)?;
    // A SARIF log names no single target it covers completely: no scope.
    let scope = None;
    let mut t = Truncations::default();
    for run in &log.runs {
        let scanned = scan_time(run.invocations.iter().find_map(|i| i.end_time_utc.as_deref()), &ctx.now);
        for r in &run.results {
            if emit(one(run, r, &scanned, ctx, &mut t)).is_break() {
                return Ok(Converted { truncations: t, scope });
            }
        }
    }
    Ok(Converted { truncations: t, scope })
}

fn one(run: &Run, r: &SarifResult, scanned: &str, ctx: &Context, t: &mut Truncations) -> Value {
    let driver = &run.tool.driver;
    let rule_id =
        r.rule_id.clone().or_else(|| r.rule.as_ref().and_then(|x| x.id.clone())).unwrap_or_default();
    let index = r.rule_index.or_else(|| r.rule.as_ref().and_then(|x| x.index));
    let rule = index.and_then(|i| driver.rules.get(i)).filter(|x| x.id == rule_id || rule_id.is_empty());
    let rule = rule.or_else(|| driver.rules.iter().find(|x| x.id == rule_id));
    let physical = r.locations.iter().find_map(|l| l.physical_location.as_ref());
    let uri =
        physical.and_then(|p| p.artifact_location.as_ref()).and_then(|a| a.uri.clone()).unwrap_or_default();
    let region = physical.and_then(|p| p.region.as_ref());
    let line = region.and_then(|r| r.start_line).map(|l| l.to_string()).unwrap_or_default();
    let column = region.and_then(|r| r.start_column).map(|c| c.to_string()).unwrap_or_default();
    let message = r.message.text.clone().unwrap_or_default();
    // Fingerprints are the tool's own identity of a result; without them, where and what.
    let prints: Vec<String> =
        r.partial_fingerprints.iter().chain(&r.fingerprints).map(|(k, v)| format!("{k}={v}")).collect();
    let identity: Vec<&str> = if prints.is_empty() {
        vec![&driver.name, &rule_id, &uri, &line, &column, &message]
    } else {
        [&driver.name, &rule_id, &uri]
            .into_iter()
            .map(String::as_str)
            .chain(prints.iter().map(String::as_str))
            .collect()
    };
    let id = finding_id("sarif", &identity);
    let label = score(&r.properties.security_severity)
        .or_else(|| rule.and_then(|x| score(&x.properties.security_severity)))
        .map(label_from_score)
        .or_else(|| r.level.as_deref().and_then(label_from_word))
        .or_else(|| {
            rule.and_then(|x| x.default_configuration.as_ref()?.level.as_deref()).and_then(label_from_word)
        })
        .unwrap_or("MEDIUM");
    let rule_text = rule.and_then(|x| x.short_description.text.clone().or_else(|| x.name.clone()));
    let title = match &rule_text {
        Some(text) => format!("{rule_id}: {text}"),
        None => format!("{rule_id}: {}", message.lines().next().unwrap_or_default()),
    };
    let mut description = message.clone();
    if let Some(full) = rule.and_then(|x| x.full_description.text.as_deref()).filter(|f| *f != message) {
        description = format!("{description}\n\n{full}");
    }
    if description.trim().is_empty() {
        description = rule_id.clone();
    }
    let at = if line.is_empty() { uri.clone() } else { format!("{uri}:{line}") };
    let generator = format!("sarif/{}/{rule_id}", driver.name);
    let head = Head {
        id,
        generator: &generator,
        types: &[finding_type(rule)],
        label,
        title: &title,
        description: &description,
        scanned,
    };
    let mut f = t.finding(head, ctx);
    if let Some(help) = rule.and_then(|x| x.help.text.clone()) {
        f["Remediation"] = json!({"Recommendation": {"Text": t.text(&help, REMEDIATION_MAX)}});
        if let Some(url) = rule.and_then(|x| x.help_uri.clone()) {
            f["Remediation"]["Recommendation"]["Url"] = json!(url);
        }
    }
    f["ProductFields"] = t.product_fields([
        ("sarif/Tool", driver.name.clone()),
        (
            "sarif/ToolVersion",
            driver.semantic_version.clone().or_else(|| driver.version.clone()).unwrap_or_default(),
        ),
        ("sarif/RuleId", rule_id),
        ("sarif/Location", at),
    ]);
    f
}

/// Vulnerability scanners tag their rules; everything else is a code or configuration check.
fn finding_type(rule: Option<&Rule>) -> &'static str {
    let tags = rule.map(|r| &r.properties.tags[..]).unwrap_or_default();
    if tags.iter().any(|t| t.eq_ignore_ascii_case("vulnerability")) {
        "Software and Configuration Checks/Vulnerabilities/CVE"
    } else {
        "Software and Configuration Checks"
    }
}
