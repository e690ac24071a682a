//! The optional Prometheus endpoint (`[metrics] listen`): the pipeline's counters and gauges,
//! read at scrape time and encoded by `prometheus-client`.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::pipeline::Observe;
use crate::pipeline::queue::Budget;

/// Reads the pipeline's state at each scrape.
#[derive(Debug)]
pub struct PipelineCollector {
    /// Counters, rate and heartbeat.
    pub observe: Observe,
    /// The memory budget (for queue depth).
    pub budget: Budget,
    /// `queue.max_findings` and `queue.max_bytes`.
    pub max: (usize, usize),
    /// The spool, for the backlog.
    pub spool: PathBuf,
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    ConstCounter::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> std::fmt::Result {
    ConstGauge::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// The buckets plus the last one, `+Inf`, holding what is over every bound. The encoder wants
/// per-bucket counts and writes them cumulated; it writes `f64::MAX` as `+Inf`.
fn with_inf(buckets: &[(f64, u64)], count: u64) -> Vec<(f64, u64)> {
    let mut all = buckets.to_vec();
    let bounded: u64 = buckets.iter().map(|(_, n)| n).sum();
    all.push((f64::MAX, count.saturating_sub(bounded)));
    all
}

impl Collector for PipelineCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let s = self.observe.stats.snapshot();
        counter(
            &mut e,
            "files_finished",
            "Spool files whose findings were all settled, then deleted or moved",
            s.files_finished,
        )?;
        counter(
            &mut e,
            "files_quarantined",
            "Spool files moved to failed/ as undecodable or not regular files",
            s.files_quarantined,
        )?;
        counter(&mut e, "findings_decoded", "Findings read from spool files", s.findings_decoded)?;
        counter(&mut e, "findings_accepted", "Findings Security Hub accepted", s.findings_accepted)?;
        counter(
            &mut e,
            "findings_retried",
            "Findings sent again after a transient failure",
            s.findings_retried,
        )?;
        counter(&mut e, "truncations", "Texts and lists cut to fit ASFF limits", s.truncations)?;
        let mut dead = e.encode_descriptor(
            "findings_dead_lettered",
            "Findings written to failed/, by error code",
            None,
            MetricType::Counter,
        )?;
        for (code, n) in &s.rejected {
            let labels = vec![("code".to_owned(), code.clone())];
            dead.encode_family(&labels)?.encode_counter::<NoLabelSet, _, u64>(n, None)?;
        }
        counter(&mut e, "requests", "BatchImportFindings requests sent", s.requests)?;
        let h = self.observe.stats.latency_histogram();
        e.encode_descriptor(
            "request_duration_seconds",
            "Time per BatchImportFindings attempt",
            None,
            MetricType::Histogram,
        )?
        .encode_histogram::<NoLabelSet>(h.sum, h.count, &with_inf(&h.buckets, h.count), None)?;
        counter(&mut e, "requests_failed", "Requests that failed as a whole", s.requests_failed)?;
        counter(&mut e, "throttles", "Requests refused with 429", s.throttles)?;
        let (free_findings, free_bytes) = (self.budget.free_findings(), self.budget.free_bytes());
        gauge(
            &mut e,
            "queue_findings",
            "Findings held in memory",
            self.max.0.saturating_sub(free_findings) as f64,
        )?;
        gauge(
            &mut e,
            "queue_bytes",
            "Bytes of findings held in memory",
            self.max.1.saturating_sub(free_bytes) as f64,
        )?;
        let (files, bytes, oldest) = crate::status::backlog(&self.spool, std::time::SystemTime::now());
        gauge(&mut e, "spool_backlog_files", "Files waiting in the spool", files as f64)?;
        gauge(&mut e, "spool_backlog_bytes", "Bytes waiting in the spool", bytes as f64)?;
        gauge(&mut e, "spool_oldest_file_age_seconds", "Age of the oldest waiting file", oldest as f64)?;
        let mut rate = e.encode_descriptor(
            "send_rate_requests_per_second",
            "Request rate the limiter allows now, by destination (ACCOUNT/REGION)",
            None,
            MetricType::Gauge,
        )?;
        for lane in self.observe.lanes() {
            let labels = vec![("destination".to_owned(), lane.name.clone())];
            rate.encode_family(&labels)?.encode_gauge(&lane.rate())?;
        }
        gauge(
            &mut e,
            "last_delivery_timestamp_seconds",
            "When Security Hub last accepted a request",
            s.last_delivery_unix as f64,
        )?;
        let mut info = e.encode_descriptor("build", "Build information", None, MetricType::Info)?;
        info.encode_info(&vec![("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned())])?;
        Ok(())
    }
}

/// Serves `GET /metrics` on `listen` until `shutdown`.
pub async fn serve(listen: std::net::SocketAddr, collector: PipelineCollector, shutdown: CancellationToken) {
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            warn!(%listen, error = %e, "cannot serve metrics");
            return;
        }
    };
    info!(%listen, "serving Prometheus metrics at /metrics");
    let mut registry = Registry::with_prefix("securityhub_agent");
    registry.register_collector(Box::new(collector));
    let registry = Arc::new(registry);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted { Ok((s, _)) => s, Err(_) => continue },
            () = shutdown.cancelled() => return,
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let registry = registry.clone();
                async move {
                    let mut text = String::new();
                    let (status, ctype) = if req.uri().path() == "/metrics" {
                        match prometheus_client::encoding::text::encode(&mut text, &registry) {
                            Ok(()) => (200, "application/openmetrics-text; version=1.0.0; charset=utf-8"),
                            Err(_) => (500, "text/plain"),
                        }
                    } else {
                        (404, "text/plain")
                    };
                    hyper::Response::builder()
                        .status(status)
                        .header("content-type", ctype)
                        .body(Full::new(Bytes::from(text)))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
