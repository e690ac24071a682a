//! One finding: its ASFF JSON kept as raw text (every field, known to the SDK or not), the few
//! fields the agent reads, defaults filled in from config, and Security Hub's rules checked.

use std::borrow::Cow;

use bytes::Bytes;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The only ASFF schema version Security Hub accepts.
pub const SCHEMA_VERSION: &str = "2018-10-08";
/// Largest finding Security Hub accepts (240 KB, counted in decimal to stay on the safe side).
pub const MAX_FINDING_BYTES: usize = 240_000;
/// Fields that change on every scan and so must not feed a derived Id.
const VOLATILE_FIELDS: &[&str] =
    &["CreatedAt", "UpdatedAt", "FirstObservedAt", "LastObservedAt", "ProcessedAt"];
const SEVERITY_LABELS: &[&str] = &["INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL"];

/// Values that config (or the instance identity) supplies to findings that lack them: those of
/// the first destination.
#[derive(Debug, Clone, Default)]
pub struct Defaults {
    /// Region, for the default product ARN.
    pub region: String,
    /// `AwsAccountId` for findings without one.
    pub account_id: Option<String>,
    /// `ProductArn` for findings without one; else the account's default product.
    pub product_arn: Option<String>,
    /// Where findings may go, in configuration order. Empty: one destination that takes every
    /// account (the defaults above fill its product ARN).
    pub routes: Vec<Route>,
}

/// One destination as routing sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Its Region.
    pub region: String,
    /// The one account it takes; `None` takes any account (a single destination whose account
    /// is not known).
    pub account_id: Option<String>,
    /// Its `ProductArn` for findings without one.
    pub product_arn: Option<String>,
}

impl Route {
    /// `arn:aws:securityhub:REGION:ACCOUNT:product/ACCOUNT/default`, or the configured ARN.
    pub fn product_arn_for(&self, account: &str) -> String {
        self.product_arn.clone().unwrap_or_else(|| {
            format!(
                "arn:{}:securityhub:{}:{account}:product/{account}/default",
                partition(&self.region),
                self.region
            )
        })
    }

    fn takes(&self, account: &str, region: Option<&str>) -> bool {
        self.account_id.as_deref().is_none_or(|a| a == account) && region.is_none_or(|r| r == self.region)
    }
}

impl Defaults {
    /// `arn:aws:securityhub:REGION:ACCOUNT:product/ACCOUNT/default`, or the configured ARN.
    pub fn product_arn_for(&self, account: &str) -> String {
        self.default_route().product_arn_for(account)
    }

    fn default_route(&self) -> Route {
        Route { region: self.region.clone(), account_id: None, product_arn: self.product_arn.clone() }
    }

    /// The index of the first route that takes a finding for `account` (and `region`, when the
    /// finding names one), with its product ARN for the finding.
    pub fn route(&self, account: &str, region: Option<&str>) -> Result<(usize, String), Rejection> {
        if self.routes.is_empty() {
            return Ok((0, self.product_arn_for(account)));
        }
        let found = self.routes.iter().position(|r| r.takes(account, region));
        match found {
            Some(i) => Ok((i, self.routes[i].product_arn_for(account))),
            None => Err(Rejection::NoDestination {
                account: account.to_owned(),
                region: region.map(str::to_owned),
            }),
        }
    }
}

/// The AWS partition of a Region: `aws`, `aws-cn` or `aws-us-gov`.
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// A finding ready to send: its final JSON and the fields the pipeline routes and reports by.
#[derive(Debug, Clone)]
pub struct Finding {
    /// `Id`; unique within a request.
    pub id: String,
    /// `ProductArn`.
    pub product_arn: String,
    /// `AwsAccountId`.
    pub account_id: String,
    /// Which destination (index into [`Defaults::routes`]) it goes to.
    pub destination: usize,
    /// The complete finding object as sent.
    pub json: Bytes,
}

/// Why a finding cannot be sent. `code()` goes into the dead-letter report.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    /// The text is not valid JSON (the whole file is then treated as malformed).
    #[error("invalid JSON: {0}")]
    Syntax(serde_json::Error),
    /// The value is valid JSON but not an object.
    #[error("the finding is not a JSON object: {0}")]
    NotAnObject(String),
    /// A required field is absent.
    #[error("required field {0} is missing")]
    Missing(&'static str),
    /// A field has the wrong type or an invalid value.
    #[error("field {field}: {reason}")]
    Invalid {
        /// The ASFF field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The finding is larger than Security Hub accepts.
    #[error("the finding is {0} bytes; Security Hub accepts at most {MAX_FINDING_BYTES}")]
    TooLarge(usize),
    /// No configured destination takes the finding's account (and Region).
    #[error(
        "no configured destination takes account {account}{}; the agent writes only into accounts \
         and Regions its configuration names",
        region.as_deref().map(|r| format!(" in {r}")).unwrap_or_default()
    )]
    NoDestination {
        /// The finding's `AwsAccountId`.
        account: String,
        /// The finding's `Region`, when it has one.
        region: Option<String>,
    },
}

impl Rejection {
    /// A short machine-readable code for reports and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::Syntax(_) => "InvalidJson",
            Rejection::NotAnObject(_) => "NotAnObject",
            Rejection::Missing(_) => "MissingField",
            Rejection::Invalid { .. } => "InvalidField",
            Rejection::TooLarge(_) => "FindingTooLarge",
            Rejection::NoDestination { .. } => "NoDestination",
        }
    }
}

/// True for exactly 12 ASCII digits.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// A JSON string, borrowed from the input unless it has escapes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize)]
#[serde(transparent)]
struct Str<'a>(#[serde(borrow)] Cow<'a, str>);

impl std::borrow::Borrow<str> for Str<'_> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// The top-level fields of a finding: names and raw values, borrowed from the input, in input
/// order. A finding has a score of fields, so a vector with linear look-ups beats a map (and keeps
/// the input's order); a repeated key keeps its last value, as JSON parsers do.
#[derive(Default)]
struct Fields<'a>(Vec<(Str<'a>, Cow<'a, RawValue>)>);

impl<'a> Fields<'a> {
    fn get(&self, key: &str) -> Option<&Cow<'a, RawValue>> {
        self.0.iter().find(|(k, _)| k.0 == key).map(|(_, v)| v)
    }
    fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
    fn insert(&mut self, key: Str<'a>, value: Cow<'a, RawValue>) {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }
    fn iter(&self) -> impl Iterator<Item = (&Str<'a>, &Cow<'a, RawValue>)> {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for Fields<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = Fields<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Fields<'a>, M::Error> {
                let mut fields = Fields(Vec::with_capacity(map.size_hint().unwrap_or(24)));
                while let Some((k, v)) = map.next_entry::<Str<'de>, &'de RawValue>()? {
                    fields.insert(k, Cow::Borrowed(v));
                }
                Ok(fields)
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// The parts of `Severity` Security Hub requires.
#[derive(serde::Deserialize)]
struct Severity<'a> {
    #[serde(rename = "Label", borrow)]
    label: Option<Str<'a>>,
    #[serde(rename = "Normalized")]
    normalized: Option<f64>,
}

/// The parts of a `Resources` entry Security Hub requires.
#[derive(serde::Deserialize)]
struct ResourceHead<'a> {
    #[serde(rename = "Type", borrow)]
    kind: Option<Str<'a>>,
    #[serde(rename = "Id", borrow)]
    id: Option<Str<'a>>,
}

/// Turns one raw finding into a [`Finding`]: fills defaults, derives a missing Id from the
/// content, checks the required fields and the size. `now` fills absent timestamps.
pub fn prepare(raw: &[u8], defaults: &Defaults, now: OffsetDateTime) -> Result<Finding, Rejection> {
    if raw.len() > MAX_FINDING_BYTES {
        // Cheap early exit; the exact size is checked again after defaults are filled in.
        return Err(Rejection::TooLarge(raw.len()));
    }
    let mut fields: Fields = match serde_json::from_slice::<Fields>(raw) {
        Ok(fields) => fields,
        Err(e) if e.is_data() => return Err(Rejection::NotAnObject(e.to_string())),
        Err(e) => return Err(Rejection::Syntax(e)),
    };
    if !fields.contains_key("Id") {
        let id = derive_id(&fields);
        fields.insert(Str(Cow::Borrowed("Id")), raw_string(&id));
    }
    fill(&mut fields, "SchemaVersion", || SCHEMA_VERSION.to_owned());
    if !(fields.contains_key("CreatedAt") && fields.contains_key("UpdatedAt")) {
        let timestamp = now.format(&Rfc3339).expect("RFC 3339 formatting of a valid time");
        fill(&mut fields, "CreatedAt", || timestamp.clone());
        fill(&mut fields, "UpdatedAt", || timestamp);
    }
    if let Some(account) = &defaults.account_id {
        fill(&mut fields, "AwsAccountId", || account.clone());
    }
    let account_id = str_field(&fields, "AwsAccountId", 12)?.into_owned();
    if !is_account_id(&account_id) {
        return Err(invalid("AwsAccountId", format!("{account_id:?} is not 12 digits")));
    }
    let region = if fields.contains_key("Region") { Some(str_field(&fields, "Region", 64)?) } else { None };
    let (destination, product_arn) = defaults.route(&account_id, region.as_deref())?;
    fill(&mut fields, "ProductArn", || product_arn);
    let id = str_field(&fields, "Id", 512)?.into_owned();
    let product_arn = str_field(&fields, "ProductArn", 2048)?.into_owned();
    validate(&fields)?;
    let json = serialize(&fields);
    if json.len() > MAX_FINDING_BYTES {
        return Err(Rejection::TooLarge(json.len()));
    }
    Ok(Finding { id, product_arn, account_id, destination, json: Bytes::from(json) })
}

fn validate(fields: &Fields) -> Result<(), Rejection> {
    let version = str_field(fields, "SchemaVersion", 64)?;
    if version != SCHEMA_VERSION {
        return Err(invalid(
            "SchemaVersion",
            format!("{version:?}; Security Hub accepts only {SCHEMA_VERSION:?}"),
        ));
    }
    str_field(fields, "GeneratorId", 512)?;
    str_field(fields, "Title", 256)?;
    str_field(fields, "Description", 1024)?;
    for key in ["CreatedAt", "UpdatedAt"] {
        let value = str_field(fields, key, 64)?;
        OffsetDateTime::parse(&value, &Rfc3339)
            .map_err(|e| invalid(key, format!("{value:?} is not an RFC 3339 timestamp ({e})")))?;
    }
    let types: Vec<Str> = array_field(fields, "Types", 1, 50)?;
    if types.iter().any(|t| t.0.is_empty()) {
        return Err(invalid("Types", "every entry must be a non-empty string".into()));
    }
    let resources: Vec<ResourceHead> = array_field(fields, "Resources", 1, 32)?;
    if let Some(i) = resources.iter().position(|r| r.kind.is_none() || r.id.is_none()) {
        return Err(invalid("Resources", format!("entry {i} needs string fields Type and Id")));
    }
    let severity: Severity = parse_field(fields, "Severity")?;
    match (severity.label, severity.normalized) {
        (Some(label), _) if SEVERITY_LABELS.contains(&&*label.0) => Ok(()),
        (Some(label), _) => {
            Err(invalid("Severity", format!("Label {:?} is not one of {SEVERITY_LABELS:?}", label.0)))
        }
        (None, Some(n)) if (0.0..=100.0).contains(&n) => Ok(()),
        _ => Err(invalid("Severity", "needs a Label (INFORMATIONAL, LOW, MEDIUM, HIGH or CRITICAL)".into())),
    }
}

fn invalid(field: &'static str, reason: String) -> Rejection {
    Rejection::Invalid { field, reason }
}

fn fill(fields: &mut Fields, key: &'static str, value: impl FnOnce() -> String) {
    if !fields.contains_key(key) {
        fields.insert(Str(Cow::Borrowed(key)), raw_string(&value()));
    }
}

fn raw_string(s: &str) -> Cow<'static, RawValue> {
    Cow::Owned(serde_json::value::to_raw_value(s).expect("a string always serializes"))
}

fn parse_field<'a, T: serde::Deserialize<'a>>(fields: &'a Fields, key: &'static str) -> Result<T, Rejection> {
    let raw = fields.get(key).ok_or(Rejection::Missing(key))?;
    serde_json::from_str(raw.get()).map_err(|e| invalid(key, e.to_string()))
}

fn str_field<'a>(fields: &'a Fields, key: &'static str, max_chars: usize) -> Result<Cow<'a, str>, Rejection> {
    let raw = fields.get(key).ok_or(Rejection::Missing(key))?;
    let Str(value) = serde_json::from_str(raw.get())
        .map_err(|_| invalid(key, format!("expected a string, found {}", preview(raw.get()))))?;
    // Byte length bounds the character count from above: count only when it could matter.
    let chars = if value.len() <= max_chars { value.len() } else { value.chars().count() };
    if chars == 0 {
        return Err(invalid(key, "is empty".into()));
    }
    if chars > max_chars {
        return Err(invalid(key, format!("is {chars} characters; the limit is {max_chars}")));
    }
    Ok(value)
}

fn array_field<'a, T: serde::Deserialize<'a>>(
    fields: &'a Fields,
    key: &'static str,
    min: usize,
    max: usize,
) -> Result<Vec<T>, Rejection> {
    let items: Vec<T> = parse_field(fields, key)?;
    if items.len() < min || items.len() > max {
        return Err(invalid(key, format!("has {} entries; it needs {min} to {max}", items.len())));
    }
    Ok(items)
}

fn preview(raw: &str) -> String {
    let mut s: String = raw.chars().take(40).collect();
    if s.len() < raw.len() {
        s.push('…');
    }
    s
}

/// A stable Id from the finding's content, timestamps left out, so that a re-send of the same
/// finding updates it in Security Hub instead of adding a copy.
fn derive_id(fields: &Fields) -> String {
    let mut hasher = Sha256::new();
    let mut sorted: Vec<_> = fields.iter().filter(|(k, _)| !VOLATILE_FIELDS.contains(&&*k.0)).collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    for (key, value) in sorted {
        hasher.update(key.0.as_bytes());
        hasher.update([0]);
        // Re-serialise through Value so key order and white space inside values do not matter.
        match serde_json::from_str::<serde_json::Value>(value.get()) {
            Ok(v) => hasher.update(v.to_string().as_bytes()),
            Err(_) => hasher.update(value.get().as_bytes()),
        }
        hasher.update([0]);
    }
    let digest = hasher.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("securityhub-agent/{hex}")
}

fn serialize(fields: &Fields) -> Vec<u8> {
    let size: usize = fields.iter().map(|(k, v)| k.0.len() + v.get().len() + 4).sum();
    let mut out = Vec::with_capacity(size + 2);
    out.push(b'{');
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, &*key.0).expect("writing to a Vec cannot fail");
        out.push(b':');
        out.extend_from_slice(value.get().as_bytes());
    }
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn defaults() -> Defaults {
        Defaults {
            region: "eu-west-1".into(),
            account_id: Some("111122223333".into()),
            product_arn: None,
            routes: vec![],
        }
    }

    fn minimal() -> Value {
        json!({
            "GeneratorId": "scanner-x",
            "Types": ["Software and Configuration Checks/Vulnerabilities/CVE"],
            "Severity": {"Label": "HIGH"},
            "Title": "CVE-2024-0001 in openssl",
            "Description": "A flaw.",
            "Resources": [{"Type": "Other", "Id": "host-1"}],
        })
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
    }

    fn prep(v: &Value) -> Result<Finding, Rejection> {
        prepare(v.to_string().as_bytes(), &defaults(), now())
    }

    #[test]
    fn fills_defaults_from_config() {
        let f = prep(&minimal()).unwrap();
        let out: Value = serde_json::from_slice(&f.json).unwrap();
        assert_eq!(out["SchemaVersion"], "2018-10-08");
        assert_eq!(out["AwsAccountId"], "111122223333");
        assert_eq!(
            out["ProductArn"],
            "arn:aws:securityhub:eu-west-1:111122223333:product/111122223333/default"
        );
        assert_eq!(out["CreatedAt"], "2023-11-14T22:13:20Z");
        assert_eq!(out["UpdatedAt"], out["CreatedAt"]);
        assert_eq!(f.id, out["Id"]);
        assert_eq!(f.account_id, "111122223333");
    }

    #[test]
    fn keeps_unknown_fields_and_given_values() {
        let mut v = minimal();
        v["Id"] = json!("given-id");
        v["ProductArn"] = json!("arn:aws:securityhub:eu-west-1:999988887777:product/acme/scanner");
        v["SomeFutureField"] = json!({"nested": [1, 2, {"x": "y"}]});
        let f = prep(&v).unwrap();
        let out: Value = serde_json::from_slice(&f.json).unwrap();
        assert_eq!(out["Id"], "given-id");
        assert_eq!(out["ProductArn"], "arn:aws:securityhub:eu-west-1:999988887777:product/acme/scanner");
        assert_eq!(out["SomeFutureField"], json!({"nested": [1, 2, {"x": "y"}]}));
    }

    #[test]
    fn derived_id_ignores_timestamps_and_layout() {
        let a = prep(&minimal()).unwrap();
        let mut later = minimal();
        later["UpdatedAt"] = json!("2030-01-01T00:00:00Z");
        let b = prep(&later).unwrap();
        assert_eq!(a.id, b.id);
        // The same content with another key order and white space.
        let text = r#"{ "Title": "CVE-2024-0001 in openssl", "Description":"A flaw.",
            "Resources":[{"Id":"host-1","Type":"Other"}], "Severity":{"Label":"HIGH"},
            "Types":["Software and Configuration Checks/Vulnerabilities/CVE"], "GeneratorId":"scanner-x"}"#;
        let c = prepare(text.as_bytes(), &defaults(), now()).unwrap();
        assert_eq!(a.id, c.id);
        let mut other = minimal();
        other["Title"] = json!("CVE-2024-0002 in openssl");
        assert_ne!(a.id, prep(&other).unwrap().id);
    }

    #[test]
    fn repeated_key_keeps_its_last_value_once_and_order_is_kept() {
        let mut v = minimal().to_string();
        v.insert_str(1, r#""Title":"first","#);
        let f = prepare(v.as_bytes(), &defaults(), now()).unwrap();
        let text = std::str::from_utf8(&f.json).unwrap();
        assert_eq!(text.matches("\"Title\"").count(), 1, "{text}");
        let out: Value = serde_json::from_slice(&f.json).unwrap();
        assert_eq!(out["Title"], "CVE-2024-0001 in openssl");
        assert!(text.starts_with("{\"Title\""), "input order kept: {text}");
    }

    #[test]
    fn rejects_each_missing_required_field() {
        for key in ["GeneratorId", "Types", "Severity", "Title", "Description", "Resources"] {
            let mut v = minimal();
            v.as_object_mut().unwrap().remove(key);
            assert!(matches!(prep(&v).unwrap_err(), Rejection::Missing(k) if k == key), "{key}");
        }
    }

    #[test]
    fn rejects_out_of_range_values() {
        let cases = [
            ("Title", json!("x".repeat(257)), "Title"),
            ("Description", json!("x".repeat(1025)), "Description"),
            ("AwsAccountId", json!("12345"), "AwsAccountId"),
            ("SchemaVersion", json!("2020-01-01"), "SchemaVersion"),
            ("UpdatedAt", json!("yesterday"), "UpdatedAt"),
            ("Severity", json!({"Label": "SEVERE"}), "Severity"),
            ("Resources", json!([]), "Resources"),
            ("Types", json!([""]), "Types"),
            ("Id", json!("x".repeat(513)), "Id"),
        ];
        for (key, value, field) in cases {
            let mut v = minimal();
            v[key] = value;
            match prep(&v).unwrap_err() {
                Rejection::Invalid { field: f, .. } => assert_eq!(f, field, "{key}"),
                other => panic!("{key}: {other:?}"),
            }
        }
    }

    #[test]
    fn accepts_limits_exactly() {
        let mut v = minimal();
        v["Title"] = json!("é".repeat(256));
        v["Description"] = json!("x".repeat(1024));
        v["Resources"] = json!(vec![json!({"Type": "Other", "Id": "r"}); 32]);
        prep(&v).unwrap();
    }

    #[test]
    fn rejects_finding_over_240_kb() {
        let mut v = minimal();
        v["ProductFields"] = json!({"blob": "x".repeat(MAX_FINDING_BYTES)});
        assert!(matches!(prep(&v).unwrap_err(), Rejection::TooLarge(n) if n > MAX_FINDING_BYTES));
    }

    #[test]
    fn rejects_non_objects() {
        for raw in ["[1,2]", "42", "\"text\""] {
            let err = prepare(raw.as_bytes(), &defaults(), now()).unwrap_err();
            assert_eq!(err.code(), "NotAnObject", "{raw}");
        }
        for raw in ["{\"a\":", "{\"a\":tru}", "{\"\\ud800x\":1}"] {
            let err = prepare(raw.as_bytes(), &defaults(), now()).unwrap_err();
            assert_eq!(err.code(), "InvalidJson", "{raw}");
        }
    }

    fn two_routes() -> Defaults {
        let route = |region: &str, account: &str, product: Option<&str>| Route {
            region: region.into(),
            account_id: Some(account.into()),
            product_arn: product.map(Into::into),
        };
        Defaults {
            region: "eu-west-1".into(),
            account_id: Some("111122223333".into()),
            product_arn: None,
            routes: vec![
                route("eu-west-1", "111122223333", None),
                route(
                    "us-east-1",
                    "444455556666",
                    Some("arn:aws:securityhub:us-east-1:999988887777:product/acme/scanner"),
                ),
            ],
        }
    }

    #[test]
    fn findings_are_routed_by_account_and_region_with_that_destination_product() {
        let d = two_routes();
        let mine = prepare(&serde_json::to_vec(&minimal()).unwrap(), &d, now()).unwrap();
        assert_eq!((mine.destination, mine.account_id.as_str()), (0, "111122223333"));
        assert_eq!(
            mine.product_arn,
            "arn:aws:securityhub:eu-west-1:111122223333:product/111122223333/default"
        );
        let mut other = minimal();
        other["AwsAccountId"] = "444455556666".into();
        let theirs = prepare(&serde_json::to_vec(&other).unwrap(), &d, now()).unwrap();
        assert_eq!(theirs.destination, 1);
        assert_eq!(theirs.product_arn, "arn:aws:securityhub:us-east-1:999988887777:product/acme/scanner");
        other["Region"] = "us-east-1".into();
        assert_eq!(prepare(&serde_json::to_vec(&other).unwrap(), &d, now()).unwrap().destination, 1);
    }

    #[test]
    fn a_finding_no_destination_takes_is_rejected_with_the_reason() {
        let d = two_routes();
        let mut v = minimal();
        v["AwsAccountId"] = "777777777777".into();
        let err = prepare(&serde_json::to_vec(&v).unwrap(), &d, now()).unwrap_err();
        assert_eq!(err.code(), "NoDestination");
        assert!(err.to_string().contains("no configured destination takes account 777777777777"), "{err}");
        v["AwsAccountId"] = "444455556666".into();
        v["Region"] = "eu-west-1".into();
        let err = prepare(&serde_json::to_vec(&v).unwrap(), &d, now()).unwrap_err();
        assert!(err.to_string().contains("account 444455556666 in eu-west-1"), "{err}");
    }

    #[test]
    fn without_account_anywhere_the_finding_is_rejected() {
        let d = Defaults { region: "eu-west-1".into(), ..Default::default() };
        let err = prepare(minimal().to_string().as_bytes(), &d, now()).unwrap_err();
        assert!(matches!(err, Rejection::Missing("AwsAccountId")), "{err:?}");
    }

    #[test]
    fn partitions_follow_region() {
        let d = Defaults { region: "cn-north-1".into(), ..Default::default() };
        assert!(d.product_arn_for("111122223333").starts_with("arn:aws-cn:securityhub:cn-north-1:"));
    }
}
