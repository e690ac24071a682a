//! The realistic finding the benches share: a ~1.1 KB CVE finding about an EC2 instance.

/// Finding number `i`.
pub fn finding(i: usize) -> serde_json::Value {
    serde_json::json!({
        "SchemaVersion": "2018-10-08",
        "Id": format!("bench/host-1/CVE-2026-{i:07}/libexample"),
        "GeneratorId": "bench-scanner",
        "Types": ["Software and Configuration Checks/Vulnerabilities/CVE"],
        "CreatedAt": "2026-11-01T10:00:00Z",
        "UpdatedAt": "2026-11-01T10:00:00Z",
        "Severity": {"Label": "HIGH", "Original": "7.5"},
        "Title": format!("CVE-2026-{i:07} in libexample 1.2.3"),
        "Description": "A heap buffer overflow in libexample's parser allows a remote attacker to cause a denial of service or possibly execute code via a crafted input file. Versions before 1.2.4 are affected.",
        "Remediation": {"Recommendation": {"Text": "Upgrade libexample to 1.2.4 or later.", "Url": "https://example.com/advisories/libexample"}},
        "Resources": [{"Type": "AwsEc2Instance", "Id": "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0", "Region": "us-east-1"}],
        "Vulnerabilities": [{"Id": format!("CVE-2026-{i:07}"), "VulnerablePackages": [{"Name": "libexample", "Version": "1.2.3", "FixedInVersion": "1.2.4", "PackageManager": "OS"}], "FixAvailable": "YES"}],
        "ProductFields": {"scanner": "bench", "target": "host-1"},
    })
}
