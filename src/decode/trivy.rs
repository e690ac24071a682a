//! Trivy JSON (`SchemaVersion: 2`) → ASFF: vulnerabilities, failed misconfigurations and
//! secrets (the secret's matched text and code context are never copied).

use std::collections::BTreeMap;

use std::ops::ControlFlow;

use serde::Deserialize;
use serde_json::{Value, json};

use super::build::{
    Context, Converted, Head, REMEDIATION_MAX, Scope, Truncations, finding_id, label_from_word, or_empty,
    scan_time,
};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Report {
    schema_version: u32,
    created_at: Option<String>,
    artifact_name: Option<String>,
    artifact_type: Option<String>,
    #[serde(default)]
    results: Vec<TrivyResult>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TrivyResult {
    target: Option<String>,
    class: Option<String>,
    #[serde(rename = "Type")]
    kind: Option<String>,
    #[serde(default)]
    vulnerabilities: Vec<Vulnerability>,
    #[serde(default)]
    misconfigurations: Vec<Misconfiguration>,
    #[serde(default)]
    secrets: Vec<Secret>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Vulnerability {
    #[serde(rename = "VulnerabilityID")]
    id: String,
    pkg_name: Option<String>,
    #[serde(rename = "PkgID")]
    pkg_id: Option<String>,
    installed_version: Option<String>,
    fixed_version: Option<String>,
    status: Option<String>,
    severity: Option<String>,
    title: Option<String>,
    description: Option<String>,
    #[serde(rename = "PrimaryURL")]
    primary_url: Option<String>,
    #[serde(default)]
    references: Vec<String>,
    #[serde(rename = "CVSS", default)]
    cvss: BTreeMap<String, Cvss>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Cvss {
    v3_score: Option<f64>,
    v3_vector: Option<String>,
    v2_score: Option<f64>,
    v2_vector: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Misconfiguration {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Type")]
    kind: Option<String>,
    title: Option<String>,
    description: Option<String>,
    message: Option<String>,
    resolution: Option<String>,
    severity: Option<String>,
    #[serde(rename = "PrimaryURL")]
    primary_url: Option<String>,
    status: Option<String>,
    cause_metadata: Option<Cause>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Cause {
    resource: Option<String>,
    start_line: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Secret {
    #[serde(rename = "RuleID")]
    rule_id: String,
    category: Option<String>,
    severity: Option<String>,
    title: Option<String>,
    start_line: Option<u64>,
}

/// Converts a report, handing each finding to `emit` as it is made (memory: the report and one
/// finding, not every finding at once); stops early when `emit` says so.
pub fn convert_each(
    bytes: &[u8],
    ctx: &Context,
    emit: &mut dyn FnMut(Value) -> ControlFlow<()>,
) -> Result<Converted, serde_json::Error> {
    let report: Report = serde_json::from_slice(bytes)?;
    if report.schema_version != 2 {
        return Err(serde::de::Error::custom(format!(
            "SchemaVersion {} is not supported (Trivy's JSON schema 2 is)",
            report.schema_version
        )));
    }
    let mut t = Truncations::default();
    let artifact = or_empty(&report.artifact_name);
    let scanned = scan_time(report.created_at.as_deref(), &ctx.now);
    let scope = (!artifact.is_empty()).then(|| Scope {
        key: format!("trivy|{artifact}|{}", or_empty(&report.artifact_type)),
        scanned: scanned.clone(),
    });
    for r in &report.results {
        let target = or_empty(&r.target);
        for v in &r.vulnerabilities {
            if emit(vulnerability(v, r, artifact, &report, &scanned, ctx, &mut t)).is_break() {
                return Ok(Converted { truncations: t, scope });
            }
        }
        for m in r.misconfigurations.iter().filter(|m| m.status.as_deref() != Some("PASS")) {
            if emit(misconfiguration(m, target, artifact, &scanned, ctx, &mut t)).is_break() {
                return Ok(Converted { truncations: t, scope });
            }
        }
        for s in &r.secrets {
            if emit(secret(s, target, artifact, &scanned, ctx, &mut t)).is_break() {
                return Ok(Converted { truncations: t, scope });
            }
        }
    }
    Ok(Converted { truncations: t, scope })
}

fn severity(word: &Option<String>) -> &'static str {
    word.as_deref().and_then(label_from_word).unwrap_or("INFORMATIONAL")
}

fn vulnerability(
    v: &Vulnerability,
    r: &TrivyResult,
    artifact: &str,
    report: &Report,
    scanned: &str,
    ctx: &Context,
    t: &mut Truncations,
) -> Value {
    let target = or_empty(&r.target);
    let pkg = or_empty(&v.pkg_name);
    let installed = or_empty(&v.installed_version);
    // One finding per (target, package, version, vulnerability): two packages with one CVE are two findings.
    let id = finding_id("trivy", &[artifact, target, or_empty(&v.pkg_id), pkg, installed, &v.id]);
    let title = format!("{} in {pkg} {installed}: {}", v.id, or_empty(&v.title));
    let head = Head {
        id,
        generator: "trivy",
        types: &["Software and Configuration Checks/Vulnerabilities/CVE"],
        label: severity(&v.severity),
        title: &title,
        description: v.description.as_deref().unwrap_or(&v.id),
        scanned,
    };
    let mut f = t.finding(head, ctx);
    let cvss: Vec<Value> = v
        .cvss
        .iter()
        .flat_map(|(source, c)| {
            let v3 = c.v3_score.map(|s| json!({"Version": "3.x", "BaseScore": s, "BaseVector": or_empty(&c.v3_vector), "Source": source}));
            let v2 = c.v2_score.map(|s| json!({"Version": "2.0", "BaseScore": s, "BaseVector": or_empty(&c.v2_vector), "Source": source}));
            v3.into_iter().chain(v2)
        })
        .collect();
    let mut package =
        json!({"Name": pkg, "Version": installed, "PackageManager": r.kind.clone().unwrap_or_default()});
    if let Some(fixed) = v.fixed_version.as_deref().filter(|s| !s.is_empty()) {
        package["FixedInVersion"] = json!(fixed);
        package["Remediation"] = json!(t.text(&format!("Upgrade {pkg} to {fixed}"), REMEDIATION_MAX));
        f["Remediation"] = json!({"Recommendation": {"Text": t.text(&format!("Upgrade {pkg} from {installed} to {fixed}."), REMEDIATION_MAX)}});
        if let Some(url) = &v.primary_url {
            f["Remediation"]["Recommendation"]["Url"] = json!(url);
        }
    }
    let fixed = v.fixed_version.as_deref().is_some_and(|s| !s.is_empty());
    let vuln = t.vulnerability(&v.id, package, fixed, cvss, &v.references);
    f["Vulnerabilities"] = json!([vuln]);
    f["ProductFields"] = t.product_fields([
        ("trivy/Artifact", artifact.to_owned()),
        ("trivy/ArtifactType", or_empty(&report.artifact_type).to_owned()),
        ("trivy/Target", target.to_owned()),
        ("trivy/Class", or_empty(&r.class).to_owned()),
        ("trivy/Status", or_empty(&v.status).to_owned()),
    ]);
    f
}

fn misconfiguration(
    m: &Misconfiguration,
    target: &str,
    artifact: &str,
    scanned: &str,
    ctx: &Context,
    t: &mut Truncations,
) -> Value {
    let cause = m.cause_metadata.as_ref();
    let resource = cause.and_then(|c| c.resource.as_deref()).unwrap_or_default();
    let line = cause.and_then(|c| c.start_line).map(|l| l.to_string()).unwrap_or_default();
    let id = finding_id("trivy", &[artifact, target, &m.id, resource, &line]);
    let title = format!("{}: {}", m.id, m.title.as_deref().unwrap_or("misconfiguration"));
    let text =
        [m.description.as_deref(), m.message.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(" ");
    let head = Head {
        id,
        generator: "trivy",
        types: &["Software and Configuration Checks/Industry and Regulatory Standards"],
        label: severity(&m.severity),
        title: &title,
        description: if text.is_empty() { &m.id } else { &text },
        scanned,
    };
    let mut f = t.finding(head, ctx);
    f["Compliance"] = json!({"Status": "FAILED"});
    if let Some(resolution) = &m.resolution {
        f["Remediation"] = json!({"Recommendation": {"Text": t.text(resolution, REMEDIATION_MAX)}});
        if let Some(url) = &m.primary_url {
            f["Remediation"]["Recommendation"]["Url"] = json!(url);
        }
    }
    f["ProductFields"] = t.product_fields([
        ("trivy/Artifact", artifact.to_owned()),
        ("trivy/Target", target.to_owned()),
        ("trivy/CheckType", or_empty(&m.kind).to_owned()),
        ("trivy/Resource", resource.to_owned()),
        ("trivy/StartLine", line),
    ]);
    f
}

/// A secret: where it is and what kind, never the matched text or the code around it.
fn secret(
    s: &Secret,
    target: &str,
    artifact: &str,
    scanned: &str,
    ctx: &Context,
    t: &mut Truncations,
) -> Value {
    let line = s.start_line.map(|l| l.to_string()).unwrap_or_default();
    let id = finding_id("trivy", &[artifact, target, &s.rule_id, &line]);
    let what = s.title.as_deref().unwrap_or(&s.rule_id);
    let title = format!("Secret in {target}: {what}");
    let description = format!(
        "Trivy found a secret ({what}, rule {}) in {target} at line {line}. The value is not copied here; rotate it and remove it from the file.",
        s.rule_id
    );
    let head = Head {
        id,
        generator: "trivy",
        types: &["Sensitive Data Identifications/Passwords"],
        label: severity(&s.severity),
        title: &title,
        description: &description,
        scanned,
    };
    let mut f = t.finding(head, ctx);
    f["ProductFields"] = t.product_fields([
        ("trivy/Artifact", artifact.to_owned()),
        ("trivy/Target", target.to_owned()),
        ("trivy/RuleID", s.rule_id.clone()),
        ("trivy/Category", or_empty(&s.category).to_owned()),
        ("trivy/StartLine", line),
    ]);
    f
}
