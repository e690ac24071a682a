//! Micro-benchmarks of the hot path, without I/O (criterion): detection and decoding per format,
//! one finding's validation, and request building. `cargo bench --bench micro`; a regression
//! in the hot path shows here before it shows end to end.

use std::hint::black_box;
use std::ops::ControlFlow;
use std::path::Path;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use securityhub_agent::decode::{self, Options, build::Context};
use securityhub_agent::finding::{self, Defaults};
use securityhub_agent::pipeline::batch::{Batcher, MAX_BODY_BYTES, body};
use time::OffsetDateTime;

fn options() -> Options {
    Options {
        defaults: Defaults {
            region: "us-east-1".into(),
            account_id: Some("123456789012".into()),
            product_arn: None,
            routes: vec![],
        },
        context: Context::for_host(
            "us-east-1",
            Some("123456789012"),
            Some("i-0abc"),
            "host",
            "2026-11-29T00:00:00Z".into(),
        ),
        include_passed: false,
    }
}

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/scanners").join(rel))
        .unwrap()
}

#[path = "workload.rs"]
mod workload;

fn asff_finding(i: usize) -> serde_json::Value {
    workload::finding(i)
}

fn decoding(c: &mut Criterion) {
    let mut ndjson = Vec::new();
    for i in 0..1000 {
        ndjson.extend_from_slice(asff_finding(i).to_string().as_bytes());
        ndjson.push(b'\n');
    }
    let inputs = [
        ("asff-ndjson-1000", ndjson),
        ("trivy-alpine-310", fixture("trivy/alpine-310.json")),
        ("trivy-amazonlinux2", fixture("trivy/amazonlinux2-gp2-x86-vm.json")),
        ("grype-keycloak", fixture("grype/keycloak-test.json")),
        ("sarif-codeql", fixture("sarif/codeql-2.5.4-codeQL-output.sarif")),
        ("xccdf-results", fixture("xccdf/test_fix_resultid_by_suffix.xccdf-results.xml")),
        ("xccdf-arf", fixture("xccdf/test_xccdf_overrides.arf.xml")),
    ];
    let options = options();
    let mut group = c.benchmark_group("decode");
    for (name, bytes) in &inputs {
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), bytes, |b, bytes| {
            b.iter(|| {
                let mut n = 0usize;
                decode::decode(
                    std::io::Cursor::new(bytes),
                    None,
                    &options,
                    OffsetDateTime::UNIX_EPOCH,
                    |_| {
                        n += 1;
                        ControlFlow::Continue(())
                    },
                )
                .unwrap();
                black_box(n)
            })
        });
    }
    group.finish();
}

fn validation(c: &mut Criterion) {
    let raw = asff_finding(7).to_string().into_bytes();
    let bare = {
        let mut v = asff_finding(7);
        v.as_object_mut().unwrap().remove("Id");
        v.to_string().into_bytes()
    };
    let defaults = options().defaults;
    let mut group = c.benchmark_group("finding");
    group.throughput(Throughput::Elements(1));
    group.bench_function("prepare", |b| {
        b.iter(|| finding::prepare(black_box(&raw), &defaults, OffsetDateTime::UNIX_EPOCH).unwrap())
    });
    group.bench_function("prepare-derive-id", |b| {
        b.iter(|| finding::prepare(black_box(&bare), &defaults, OffsetDateTime::UNIX_EPOCH).unwrap())
    });
    group.finish();
}

fn batching(c: &mut Criterion) {
    let defaults = options().defaults;
    let findings: Vec<_> = (0..1000)
        .map(|i| {
            finding::prepare(asff_finding(i).to_string().as_bytes(), &defaults, OffsetDateTime::UNIX_EPOCH)
                .unwrap()
        })
        .collect();
    let mut group = c.benchmark_group("batch");
    group.throughput(Throughput::Elements(findings.len() as u64));
    group.bench_function("1000-findings-into-requests", |b| {
        b.iter(|| {
            let mut batcher = Batcher::new(100, MAX_BODY_BYTES);
            let mut bytes = 0;
            for f in &findings {
                for batch in batcher.push(f.clone()) {
                    bytes += body(&batch).len();
                }
            }
            if let Some(batch) = batcher.flush() {
                bytes += body(&batch).len();
            }
            black_box(bytes)
        })
    });
    group.finish();
}

criterion_group!(benches, decoding, validation, batching);
criterion_main!(benches);
