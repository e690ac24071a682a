//! `securityhub-agent iam-policy`: the least-privilege IAM policy documents for the configured
//! destinations, per integration model (AWS partner guide, "Integration use cases and required
//! permissions"). Pure: configuration in, JSON out.

use serde_json::{Value, json};

use crate::config::DestinationConfig;
use crate::finding::Route;
use crate::hub::preflight::{Model, is_default_product, subscription_arn};

/// Stands in for what the configuration does not say.
pub const PARTNER_PRINCIPAL: &str = "arn:aws:iam::PARTNER_ACCOUNT_ID:root";

/// The documents for `destinations`, each under its model (`model` overrides the one the
/// configuration implies): `permission` for the principal that calls `BatchImportFindings`;
/// with an assumed role also `trust` (the role's trust policy) and `assume` (for the agent's
/// own principal). `partner_principal` is who may assume the role.
pub fn documents(destinations: &[DestinationConfig], model: Option<Model>, partner_principal: &str) -> Value {
    let mut import = Vec::new();
    let mut roles = Vec::new();
    let mut external_id = false;
    let mut doctor = false;
    for d in destinations {
        let model = model.unwrap_or_else(|| Model::of(d, None));
        let region = d.region.as_deref().unwrap_or("*");
        let account = d.account_id.as_deref().unwrap_or("*");
        let default =
            Route { region: region.into(), account_id: None, product_arn: None }.product_arn_for(account);
        let product = d.product_arn.clone().unwrap_or(default);
        let resource = match model {
            Model::PartnerAccount => product,
            _ if is_default_product(&product) => product,
            _ => subscription_arn(&product, account).unwrap_or(product),
        };
        if !import.contains(&resource) {
            import.push(resource);
        }
        doctor |= model != Model::PartnerAccount;
        if model == Model::PartnerCustomerAccount {
            let role = d.role_arn.clone().unwrap_or_else(|| format!("arn:aws:iam::{account}:role/ROLE_NAME"));
            if !roles.contains(&role) {
                roles.push(role);
            }
            external_id |= d.external_id.is_some() || d.role_arn.is_none();
        }
    }
    let mut statements = vec![json!({
        "Sid": "ImportFindings",
        "Effect": "Allow",
        "Action": "securityhub:BatchImportFindings",
        "Resource": import,
    })];
    if doctor {
        statements.push(json!({
            "Sid": "PreflightChecks",
            "Effect": "Allow",
            "Action": ["securityhub:DescribeHub", "securityhub:ListEnabledProductsForImport"],
            "Resource": "*",
        }));
    }
    let mut out = json!({ "permission": { "Version": "2012-10-17", "Statement": statements } });
    if !roles.is_empty() {
        let mut trust = json!({
            "Sid": "PartnerAssumesRole",
            "Effect": "Allow",
            "Principal": { "AWS": partner_principal },
            "Action": "sts:AssumeRole",
        });
        if external_id {
            trust["Condition"] =
                json!({ "StringEquals": { "sts:ExternalId": "EXTERNAL_ID (the configured external_id)" } });
        }
        out["trust"] = json!({ "Version": "2012-10-17", "Statement": [trust] });
        out["assume"] = json!({
            "Version": "2012-10-17",
            "Statement": [{ "Sid": "AssumeCustomerRole", "Effect": "Allow", "Action": "sts:AssumeRole", "Resource": roles }],
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACME: &str = "arn:aws:securityhub:us-east-1:999988887777:product/acme/scanner";

    fn dest(product: Option<&str>, role: Option<&str>) -> DestinationConfig {
        DestinationConfig {
            region: Some("us-east-1".into()),
            account_id: Some("111122223333".into()),
            product_arn: product.map(Into::into),
            role_arn: role.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn customer_hosted_may_import_into_its_own_default_product_only() {
        let doc = documents(&[dest(None, None)], None, PARTNER_PRINCIPAL);
        assert_eq!(
            doc["permission"]["Statement"][0]["Resource"],
            json!(["arn:aws:securityhub:us-east-1:111122223333:product/111122223333/default"])
        );
        assert_eq!(doc["permission"]["Statement"][0]["Action"], "securityhub:BatchImportFindings");
        assert!(doc.get("trust").is_none());
    }

    #[test]
    fn a_role_in_the_customer_account_imports_through_the_product_subscription_and_trusts_the_partner() {
        let mut d = dest(Some(ACME), Some("arn:aws:iam::111122223333:role/acme-import"));
        d.external_id = Some(crate::config::Redacted("s3cr3t".into()));
        let doc = documents(&[d], None, "arn:aws:iam::999988887777:root");
        assert_eq!(
            doc["permission"]["Statement"][0]["Resource"],
            json!(["arn:aws:securityhub:us-east-1:111122223333:product-subscription/acme/scanner"])
        );
        let trust = &doc["trust"]["Statement"][0];
        assert_eq!(trust["Principal"]["AWS"], "arn:aws:iam::999988887777:root");
        assert!(trust["Condition"]["StringEquals"]["sts:ExternalId"].is_string());
        assert!(!doc.to_string().contains("s3cr3t"), "the external id itself is never printed");
        assert_eq!(
            doc["assume"]["Statement"][0]["Resource"],
            json!(["arn:aws:iam::111122223333:role/acme-import"])
        );
    }

    #[test]
    fn the_partner_account_imports_through_its_own_product() {
        let doc = documents(&[dest(Some(ACME), None)], Some(Model::PartnerAccount), PARTNER_PRINCIPAL);
        assert_eq!(doc["permission"]["Statement"][0]["Resource"], json!([ACME]));
        assert_eq!(doc["permission"]["Statement"].as_array().unwrap().len(), 1, "no preflight statement");
    }

    #[test]
    fn several_destinations_share_one_statement_without_repeats() {
        let mut other = dest(None, None);
        other.account_id = Some("444455556666".into());
        let doc = documents(&[dest(None, None), other, dest(None, None)], None, PARTNER_PRINCIPAL);
        assert_eq!(doc["permission"]["Statement"][0]["Resource"].as_array().unwrap().len(), 2);
    }
}
