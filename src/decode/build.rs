//! What every scanner converter shares: deterministic Ids, ASFF limits kept by truncation with a
//! visible marker, severity from labels or scores, and the default resource (this instance).

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Appended to a text that was cut to fit an ASFF limit.
pub const TRUNCATION_MARKER: &str = " …[truncated]";
/// `Title` limit.
pub const TITLE_MAX: usize = 256;
/// `Description` limit.
pub const DESCRIPTION_MAX: usize = 1024;
/// `Remediation.Recommendation.Text` limit.
pub const REMEDIATION_MAX: usize = 512;
/// `ProductFields` pairs limit.
pub const PRODUCT_FIELDS_MAX: usize = 50;
/// `Resources` entries limit.
pub const RESOURCES_MAX: usize = 32;
/// `Types` entries limit.
pub const TYPES_MAX: usize = 50;
/// A `ProductFields` value limit.
const PRODUCT_FIELD_VALUE_MAX: usize = 1024;

/// What a converter knows of where it runs.
#[derive(Debug, Clone)]
pub struct Context {
    /// The resource a finding is about when the report names none (this instance).
    pub resource: Value,
    /// `UpdatedAt`/`CreatedAt` when the report has no scan time (RFC 3339).
    pub now: String,
}

impl Context {
    /// The default resource: this EC2 instance when its id is known, else the host by name.
    pub fn for_host(
        region: &str,
        account: Option<&str>,
        instance_id: Option<&str>,
        hostname: &str,
        now: String,
    ) -> Self {
        let resource = match (instance_id, account) {
            (Some(id), Some(account)) => json!({
                "Type": "AwsEc2Instance",
                "Id": format!("arn:{}:ec2:{region}:{account}:instance/{id}", crate::finding::partition(region)),
                "Region": region,
            }),
            _ => json!({"Type": "Other", "Id": hostname, "Region": region}),
        };
        Self { resource, now }
    }
}

/// What a converter says about a whole report besides its findings.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Converted {
    /// Cuts made to fit ASFF limits.
    pub truncations: Truncations,
    /// The report's scan scope — scanner and target — when it describes one target completely
    /// (see `[lifecycle]`): findings of the previous report of the same scope that this one no
    /// longer has are resolved.
    pub scope: Option<Scope>,
}

/// A report's scan scope and when it was scanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// `scanner|target|...`: reports with the same key describe the same target.
    pub key: String,
    /// The report's scan time (RFC 3339): what its findings carry as `UpdatedAt`.
    pub scanned: String,
}

/// Counts the cuts made to fit ASFF limits.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Truncations(pub u32);

impl Truncations {
    /// `s` cut to `max` characters (marker included) when longer.
    pub fn text(&mut self, s: &str, max: usize) -> String {
        if s.chars().count() <= max {
            return s.to_owned();
        }
        self.0 += 1;
        let keep = max - TRUNCATION_MARKER.chars().count();
        let mut out: String = s.chars().take(keep).collect();
        out.push_str(TRUNCATION_MARKER);
        out
    }

    /// `items` cut to `max` entries.
    pub fn list<T>(&mut self, mut items: Vec<T>, max: usize) -> Vec<T> {
        if items.len() > max {
            self.0 += 1;
            items.truncate(max);
        }
        items
    }

    /// `ProductFields` from pairs: at most 50, values cut to 1024 characters, empty values left out.
    pub fn product_fields<'a>(&mut self, pairs: impl IntoIterator<Item = (&'a str, String)>) -> Value {
        let mut map = Map::new();
        for (k, v) in pairs {
            if v.is_empty() {
                continue;
            }
            if map.len() == PRODUCT_FIELDS_MAX {
                self.0 += 1;
                break;
            }
            let v = self.text(&v, PRODUCT_FIELD_VALUE_MAX);
            map.insert(k.to_owned(), Value::String(v));
        }
        Value::Object(map)
    }
}

/// The fields every converted finding has; see [`Truncations::finding`].
pub struct Head<'a> {
    /// From [`finding_id`].
    pub id: String,
    /// `GeneratorId`.
    pub generator: &'a str,
    /// `Types`.
    pub types: &'a [&'a str],
    /// `Severity.Label`.
    pub label: &'a str,
    /// `Title`, before truncation; trailing `": "` is dropped.
    pub title: &'a str,
    /// `Description`, before truncation.
    pub description: &'a str,
    /// `CreatedAt` and `UpdatedAt`.
    pub scanned: &'a str,
}

impl Truncations {
    /// A finding with ASFF's required fields, texts cut to their limits, about `ctx.resource`.
    pub fn finding(&mut self, h: Head, ctx: &Context) -> Value {
        json!({
            "SchemaVersion": crate::finding::SCHEMA_VERSION,
            "Id": h.id,
            "GeneratorId": self.text(h.generator, 512),
            "Types": self.list(h.types.to_vec(), TYPES_MAX),
            "CreatedAt": h.scanned,
            "UpdatedAt": h.scanned,
            "Severity": {"Label": h.label},
            "Title": self.text(h.title.trim_end_matches([':', ' ']), TITLE_MAX),
            "Description": self.text(h.description, DESCRIPTION_MAX),
            "Resources": [ctx.resource.clone()],
        })
    }

    /// One `Vulnerabilities[]` entry: the package, CVSS scores (if any) and reference URLs (≤ 50).
    pub fn vulnerability(
        &mut self,
        id: &str,
        package: Value,
        fixed: bool,
        cvss: Vec<Value>,
        urls: &[String],
    ) -> Value {
        let mut v = json!({"Id": id, "VulnerablePackages": [package], "FixAvailable": if fixed { "YES" } else { "NO" }});
        if !cvss.is_empty() {
            v["Cvss"] = json!(cvss);
        }
        let urls = self.list(urls.to_vec(), 50);
        if !urls.is_empty() {
            v["ReferenceUrls"] = json!(urls);
        }
        v
    }
}

/// A stable Id from what identifies an issue (never a timestamp): `SCANNER/` and 32 hex digits.
pub fn finding_id(scanner: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(scanner.as_bytes());
    for p in parts {
        h.update([0]);
        h.update(p.as_bytes());
    }
    let digest = h.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{scanner}/{hex}")
}

/// An ASFF severity label from a scanner's word for it (any case); unknown words give `None`.
pub fn label_from_word(word: &str) -> Option<&'static str> {
    Some(match word.to_ascii_uppercase().as_str() {
        "CRITICAL" => "CRITICAL",
        "HIGH" | "IMPORTANT" | "ERROR" => "HIGH",
        "MEDIUM" | "MODERATE" | "WARNING" => "MEDIUM",
        "LOW" => "LOW",
        "NEGLIGIBLE" | "INFO" | "INFORMATIONAL" | "NOTE" | "NONE" | "UNKNOWN" => "INFORMATIONAL",
        _ => return None,
    })
}

/// An ASFF severity label from a CVSS-like score (0–10), as Security Hub's own bands.
pub fn label_from_score(score: f64) -> &'static str {
    match score {
        s if s >= 9.0 => "CRITICAL",
        s if s >= 7.0 => "HIGH",
        s if s >= 4.0 => "MEDIUM",
        s if s > 0.0 => "LOW",
        _ => "INFORMATIONAL",
    }
}

/// The scan time a report gives, if it is a usable RFC 3339 time (one without an offset, as
/// OpenSCAP writes, is taken as UTC); else `now`.
pub fn scan_time(raw: Option<&str>, now: &str) -> String {
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else { return now.to_owned() };
    for candidate in [raw.to_owned(), format!("{raw}Z")] {
        if OffsetDateTime::parse(&candidate, &Rfc3339).is_ok() {
            return candidate;
        }
    }
    now.to_owned()
}

/// Text of an optional string, or "".
pub fn or_empty(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or_default()
}

/// What a streaming converter emits, collected into a list (for tests; the daemon hands each
/// finding on as it is made).
#[cfg(test)]
pub(crate) fn collect<E>(
    convert: impl FnOnce(&mut dyn FnMut(Value) -> std::ops::ControlFlow<()>) -> Result<Converted, E>,
) -> Result<(Vec<Value>, Truncations), E> {
    let mut out = Vec::new();
    let c = convert(&mut |v| {
        out.push(v);
        std::ops::ControlFlow::Continue(())
    })?;
    Ok((out, c.truncations))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_the_limit_and_shows_the_marker() {
        let mut t = Truncations::default();
        let long = "é".repeat(2000);
        let cut = t.text(&long, DESCRIPTION_MAX);
        assert_eq!(cut.chars().count(), DESCRIPTION_MAX);
        assert!(cut.ends_with(TRUNCATION_MARKER));
        assert_eq!(t.text("short", 10), "short");
        assert_eq!(t.list(vec![1; 40], RESOURCES_MAX).len(), 32);
        assert_eq!(t, Truncations(2));
    }

    #[test]
    fn product_fields_are_capped_at_50_pairs() {
        let mut t = Truncations::default();
        let keys: Vec<String> = (0..60).map(|i| format!("k{i}")).collect();
        let v = t.product_fields(keys.iter().map(|k| (k.as_str(), "v".to_owned())));
        assert_eq!(v.as_object().unwrap().len(), 50);
        assert_eq!(t.0, 1);
        let v = t.product_fields([("a", String::new()), ("b", "x".into())]);
        assert_eq!(v, json!({"b": "x"}), "empty values are left out");
    }

    #[test]
    fn ids_are_stable_and_distinguish_every_part() {
        assert_eq!(finding_id("trivy", &["a", "b"]), finding_id("trivy", &["a", "b"]));
        assert_ne!(finding_id("trivy", &["a", "b"]), finding_id("trivy", &["ab", ""]));
        assert_ne!(finding_id("trivy", &["a"]), finding_id("grype", &["a"]));
        assert!(finding_id("trivy", &["x"]).starts_with("trivy/") && finding_id("trivy", &["x"]).len() == 38);
    }

    #[test]
    fn severities_map_to_asff_labels() {
        assert_eq!(label_from_word("Negligible"), Some("INFORMATIONAL"));
        assert_eq!(label_from_word("medium"), Some("MEDIUM"));
        assert_eq!(label_from_word("UNKNOWN"), Some("INFORMATIONAL"));
        assert_eq!(label_from_word("bogus"), None);
        assert_eq!(
            [9.8, 7.0, 6.9, 4.0, 0.1, 0.0].map(label_from_score),
            ["CRITICAL", "HIGH", "MEDIUM", "MEDIUM", "LOW", "INFORMATIONAL"]
        );
    }

    #[test]
    fn scan_times_are_checked_and_completed() {
        assert_eq!(scan_time(Some("2017-06-30T14:04:25"), "now"), "2017-06-30T14:04:25Z");
        assert_eq!(
            scan_time(Some("2021-08-25T12:20:30.000000005Z"), "now"),
            "2021-08-25T12:20:30.000000005Z"
        );
        assert_eq!(scan_time(Some("2021-08-25T18:20:30+06:00"), "now"), "2021-08-25T18:20:30+06:00");
        assert_eq!(scan_time(Some(""), "now"), "now");
        assert_eq!(scan_time(Some("yesterday"), "now"), "now");
        assert_eq!(scan_time(None, "now"), "now");
    }

    #[test]
    fn default_resource_is_the_instance_when_known() {
        let c = Context::for_host("eu-west-1", Some("111122223333"), Some("i-0abc"), "web-1", "t".into());
        assert_eq!(c.resource["Id"], "arn:aws:ec2:eu-west-1:111122223333:instance/i-0abc");
        let c = Context::for_host("eu-west-1", None, None, "web-1", "t".into());
        assert_eq!(c.resource, json!({"Type": "Other", "Id": "web-1", "Region": "eu-west-1"}));
    }
}
