//! Grype JSON → ASFF: one finding per match (vulnerability × package), severity from Grype's
//! title-case label or else the CVSS score, fix state and versions, CVSS from the match or from
//! `relatedVulnerabilities`.

use std::ops::ControlFlow;

use serde::Deserialize;
use serde_json::{Value, json};

use super::build::{
    Context, Converted, Head, REMEDIATION_MAX, Scope, Truncations, finding_id, label_from_score,
    label_from_word, or_empty, scan_time,
};

#[derive(Deserialize)]
struct Report {
    matches: Vec<Match>,
    #[serde(default)]
    source: Option<Source>,
    #[serde(default)]
    descriptor: Option<Descriptor>,
}

#[derive(Deserialize)]
struct Source {
    #[serde(rename = "type")]
    kind: Option<String>,
    target: Option<Value>,
}

#[derive(Deserialize)]
struct Descriptor {
    version: Option<String>,
    timestamp: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Match {
    vulnerability: Vuln,
    #[serde(default)]
    related_vulnerabilities: Vec<Vuln>,
    artifact: Artifact,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Vuln {
    id: String,
    data_source: Option<String>,
    severity: Option<String>,
    #[serde(default)]
    urls: Vec<String>,
    description: Option<String>,
    #[serde(default)]
    cvss: Vec<GrypeCvss>,
    fix: Option<Fix>,
}

#[derive(Deserialize)]
struct GrypeCvss {
    version: Option<String>,
    vector: Option<String>,
    source: Option<String>,
    metrics: Option<Metrics>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metrics {
    base_score: Option<f64>,
}

#[derive(Deserialize)]
struct Fix {
    #[serde(default)]
    versions: Vec<String>,
    state: Option<String>,
}

#[derive(Deserialize)]
struct Artifact {
    name: String,
    version: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    locations: Vec<Location>,
    purl: Option<String>,
}

#[derive(Deserialize)]
struct Location {
    path: Option<String>,
}

/// Converts a report, handing each finding to `emit` as it is made; stops when `emit` says so.
pub fn convert_each(
    bytes: &[u8],
    ctx: &Context,
    emit: &mut dyn FnMut(Value) -> ControlFlow<()>,
) -> Result<Converted, serde_json::Error> {
    let report: Report = serde_json::from_slice(bytes)?;
    let mut t = Truncations::default();
    let target = report.source.as_ref().and_then(|s| s.target.as_ref()).map(target_name).unwrap_or_default();
    let source_type = report.source.as_ref().and_then(|s| s.kind.clone()).unwrap_or_default();
    let scanned = scan_time(report.descriptor.as_ref().and_then(|d| d.timestamp.as_deref()), &ctx.now);
    let version = report.descriptor.as_ref().and_then(|d| d.version.clone()).unwrap_or_default();
    let scope =
        (!target.is_empty()).then(|| Scope { key: format!("grype|{target}"), scanned: scanned.clone() });
    for m in &report.matches {
        if emit(one(m, &target, &source_type, &version, &scanned, ctx, &mut t)).is_break() {
            break;
        }
    }
    Ok(Converted { truncations: t, scope })
}

/// `source.target` is a string for directories and an object with `userInput` for images.
fn target_name(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.get("userInput").and_then(Value::as_str).unwrap_or_default().to_owned(),
    }
}

fn cvss_of(v: &Vuln) -> impl Iterator<Item = (f64, &GrypeCvss)> {
    v.cvss.iter().filter_map(|c| c.metrics.as_ref().and_then(|m| m.base_score).map(|s| (s, c)))
}

fn one(
    m: &Match,
    target: &str,
    source_type: &str,
    version: &str,
    scanned: &str,
    ctx: &Context,
    t: &mut Truncations,
) -> Value {
    let v = &m.vulnerability;
    let a = &m.artifact;
    let installed = or_empty(&a.version);
    let path = a.locations.first().and_then(|l| l.path.clone()).unwrap_or_default();
    let id = finding_id("grype", &[target, &a.name, installed, or_empty(&a.kind), &path, &v.id]);
    // CVSS of the match itself, else of its related records (often NVD's).
    let scores: Vec<(f64, &GrypeCvss)> = {
        let own: Vec<_> = cvss_of(v).collect();
        if own.is_empty() { m.related_vulnerabilities.iter().flat_map(cvss_of).collect() } else { own }
    };
    let label = v
        .severity
        .as_deref()
        .and_then(label_from_word)
        .filter(|l| *l != "INFORMATIONAL" || scores.is_empty())
        .or_else(|| scores.iter().map(|(s, _)| *s).reduce(f64::max).map(label_from_score))
        .unwrap_or("INFORMATIONAL");
    let description = v
        .description
        .clone()
        .or_else(|| m.related_vulnerabilities.iter().find_map(|r| r.description.clone()))
        .unwrap_or_else(|| v.id.clone());
    let title = format!("{} in {} {installed}", v.id, a.name);
    let head = Head {
        id,
        generator: "grype",
        types: &["Software and Configuration Checks/Vulnerabilities/CVE"],
        label,
        title: &title,
        description: &description,
        scanned,
    };
    let mut f = t.finding(head, ctx);
    f["Severity"]["Original"] = json!(v.severity.clone().unwrap_or_default());
    let fix = v.fix.as_ref();
    let fixed: Vec<&str> = fix.map(|f| f.versions.iter().map(String::as_str).collect()).unwrap_or_default();
    let mut package = json!({"Name": a.name, "Version": installed, "PackageManager": or_empty(&a.kind)});
    if !path.is_empty() {
        package["FilePath"] = json!(path);
    }
    if !fixed.is_empty() {
        package["FixedInVersion"] = json!(fixed.join(", "));
        let text = t.text(
            &format!("Upgrade {} from {installed} to {}.", a.name, fixed.join(" or ")),
            REMEDIATION_MAX,
        );
        f["Remediation"] = json!({"Recommendation": {"Text": text}});
    }
    let fix_available = match fix.and_then(|f| f.state.as_deref()) {
        Some("fixed") => true,
        Some("not-fixed" | "wont-fix") => false,
        _ => !fixed.is_empty(),
    };
    let cvss: Vec<Value> = scores
        .iter()
        .map(|(s, c)| json!({"Version": or_empty(&c.version), "BaseScore": s, "BaseVector": or_empty(&c.vector), "Source": or_empty(&c.source)}))
        .collect();
    let vuln = t.vulnerability(&v.id, package, fix_available, cvss, &v.urls);
    f["Vulnerabilities"] = json!([vuln]);
    f["ProductFields"] = t.product_fields([
        ("grype/Target", target.to_owned()),
        ("grype/SourceType", source_type.to_owned()),
        ("grype/Version", version.to_owned()),
        ("grype/FixState", fix.and_then(|f| f.state.clone()).unwrap_or_default()),
        ("grype/Purl", or_empty(&a.purl).to_owned()),
        ("grype/DataSource", or_empty(&v.data_source).to_owned()),
    ]);
    f
}
