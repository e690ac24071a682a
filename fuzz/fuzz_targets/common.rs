// Shared by the decode targets: the options the daemon would use on an instance.
use securityhub_agent::decode::{Options, build::Context};
use securityhub_agent::finding::Defaults;

pub fn options() -> Options {
    Options {
        defaults: Defaults {
            region: "eu-west-1".into(),
            account_id: Some("111122223333".into()),
            product_arn: None,
            routes: vec![],
        },
        context: Context::for_host(
            "eu-west-1",
            Some("111122223333"),
            Some("i-0abc"),
            "host",
            "2026-11-29T00:00:00Z".into(),
        ),
        include_passed: true,
    }
}
