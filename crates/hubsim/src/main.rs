//! `hubsim`: run the Security Hub stand-in on loopback, e.g. for the README's demo or the benches.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use hubsim::{Credentials, Faults, Hub, Options, Quota, RequestFault};

/// A loopback stand-in for AWS Security Hub (BatchImportFindings, GetFindings).
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:4566")]
    listen: SocketAddr,
    /// Verify SigV4 signatures made with this access key id (requires --secret-key).
    #[arg(long, requires = "secret_key")]
    access_key: Option<String>,
    /// Secret key for signature verification.
    #[arg(long)]
    secret_key: Option<String>,
    /// Request quota as RATE/BURST, e.g. 10/30 (Security Hub's own).
    #[arg(long, value_parser = parse_quota)]
    quota: Option<Quota>,
    /// Chance (0-1) that a request gets an injected fault.
    #[arg(long, default_value_t = 0.0)]
    fault_rate: f64,
    /// Faults to inject: comma-separated of 500, 503, 429, drop, delay=MS.
    #[arg(long, value_delimiter = ',', value_parser = parse_fault)]
    faults: Vec<RequestFault>,
    /// Seed for the fault dice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The account the credentials belong to (GetCallerIdentity, DescribeHub).
    #[arg(long)]
    account: Option<String>,
    /// Print each second's totals to stderr.
    #[arg(long)]
    verbose: bool,
    /// Write the address actually listened on to this file once ready (use with port 0).
    #[arg(long)]
    addr_file: Option<std::path::PathBuf>,
    /// On exit, print every stored finding (Id, severity, title) and the totals to stdout.
    #[arg(long)]
    report: bool,
}

fn parse_quota(s: &str) -> Result<Quota, String> {
    let (rate, burst) = s.split_once('/').ok_or("expected RATE/BURST")?;
    Ok(Quota {
        rate: rate.parse().map_err(|e| format!("{e}"))?,
        burst: burst.parse().map_err(|e| format!("{e}"))?,
    })
}

fn parse_fault(s: &str) -> Result<RequestFault, String> {
    Ok(match s {
        "500" => RequestFault::Internal,
        "503" => RequestFault::Unavailable,
        "429" => RequestFault::Throttle,
        "drop" => RequestFault::Drop,
        _ => match s.strip_prefix("delay=") {
            Some(ms) => RequestFault::Delay(Duration::from_millis(ms.parse().map_err(|e| format!("{e}"))?)),
            None => return Err(format!("unknown fault {s:?}")),
        },
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let credentials = args
        .access_key
        .zip(args.secret_key)
        .map(|(access_key, secret_key)| Credentials { access_key, secret_key });
    let options = Options {
        credentials: credentials.into_iter().collect(),
        quota: args.quota,
        faults: Faults { request_rate: args.fault_rate, request_kinds: args.faults, ..Faults::default() },
        seed: args.seed,
        account: args.account.clone(),
        ..Options::default()
    };
    let hub = Hub::start_on(args.listen, options).await?;
    eprintln!("hubsim listening on {} (findings: GET {}/_hubsim/findings)", hub.endpoint(), hub.endpoint());
    if let Some(path) = &args.addr_file {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, hub.addr().to_string())?;
        std::fs::rename(&tmp, path)?;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = tick.tick(), if args.verbose => eprintln!("{}", serde_json::to_string(&hub.stats()).unwrap_or_default()),
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    if args.report {
        print_report(&hub);
    }
    Ok(())
}

fn print_report(hub: &Hub) {
    let mut findings = hub.findings();
    findings.sort_by(|a, b| a["Id"].as_str().cmp(&b["Id"].as_str()));
    println!("{} findings stored in hubsim:", findings.len());
    for f in &findings {
        let text = |v: &serde_json::Value| v.as_str().unwrap_or("?").to_owned();
        println!(
            "  {:<13} {:<12} {}  [{}]",
            text(&f["Severity"]["Label"]),
            text(&f["AwsAccountId"]),
            text(&f["Title"]),
            text(&f["Id"])
        );
    }
    println!("totals: {}", serde_json::to_string(&hub.stats()).unwrap_or_default());
}
