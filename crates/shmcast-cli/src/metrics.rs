//! `serve --metrics ADDR`: the served channels in Prometheus' text format
//! (version 0.0.4), on `http://ADDR/metrics`, one series per channel:
//!
//! - `shmcast_frames_total`: frames published (frame numbers, which go on
//!   across take-overs);
//! - `shmcast_dropped_frames_total`: frames dropped because readers leased
//!   every free slot;
//! - `shmcast_leasers`: readers registered to lease (read-only readers
//!   register nowhere: they write nothing, so nobody can count them);
//! - `shmcast_source_restarts_total`: times ffmpeg was started again
//!   after it failed or stalled;
//! - `shmcast_stalled`: 1 when the channel is stalled, else 0;
//! - `shmcast_frame_age_seconds`: since the latest frame was published.
//!
//! No publish-to-read latency histogram: the publisher never learns when a
//! reader read, and read-only readers must write nothing to tell it; the
//! benchmark measures that latency instead.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use shmcast::Name;

/// Where `serve --metrics` listens when given no address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9464";

/// Channel `name`'s source restarts, counted by its loop and shown here.
pub fn restarts(name: &Name) -> Arc<AtomicU64> {
    static COUNTS: OnceLock<Mutex<HashMap<String, Arc<AtomicU64>>>> = OnceLock::new();
    let mut counts = COUNTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    Arc::clone(counts.entry(name.to_string()).or_default())
}

/// Serves the metrics of `names` (the channels being served, kept current
/// by serve) on `addr`, from a thread of its own.
pub fn start(addr: &str, names: Arc<Mutex<Vec<Name>>>) -> Result<(), String> {
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| format!("--metrics {addr}: give an address and port, e.g. {DEFAULT_ADDR}"))?;
    if !addr.ip().is_loopback() {
        crate::log::warn(
            "",
            format!("metrics on {addr}, beyond this machine: anyone there can read them"),
        );
    }
    let server = tiny_http::Server::http(addr)
        .map_err(|e| format!("--metrics: cannot listen on {addr}: {e}"))?;
    crate::log::info("", format!("metrics on http://{addr}/metrics"));
    std::thread::spawn(move || {
        for request in server.incoming_requests() {
            let path = request.url().split('?').next().unwrap_or("");
            let response = if path == "/metrics" {
                let names = names.lock().unwrap_or_else(|e| e.into_inner()).clone();
                tiny_http::Response::from_string(render(&names)).with_header(
                    tiny_http::Header::from_bytes(
                        &b"Content-Type"[..],
                        &b"text/plain; version=0.0.4; charset=utf-8"[..],
                    )
                    .expect("a valid header"),
                )
            } else {
                tiny_http::Response::from_string("see /metrics").with_status_code(404)
            };
            let _ = request.respond(response);
        }
    });
    Ok(())
}

/// A label value with `\`, `"` and newlines escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The exposition of `names` now. A channel that cannot be looked at
/// (not created yet) has no series.
pub fn render(names: &[Name]) -> String {
    struct Row {
        channel: String,
        frames: u64,
        dropped: u64,
        leasers: Option<usize>,
        restarts: u64,
        stalled: bool,
        age: f64,
    }
    let now_ns = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let rows: Vec<Row> = names
        .iter()
        .filter_map(|name| {
            let c = shmcast::inspect_channel(name).ok()?;
            Some(Row {
                channel: label(&name.to_string()),
                frames: c.latest_frame,
                dropped: c.dropped_frames,
                leasers: c.subscribers,
                restarts: restarts(name).load(Ordering::Relaxed),
                stalled: crate::health_of(&c) != "live",
                age: if c.last_publish_ns == 0 {
                    f64::NAN
                } else {
                    Duration::from_nanos(now_ns.saturating_sub(c.last_publish_ns)).as_secs_f64()
                },
            })
        })
        .collect();
    let mut out = String::new();
    let mut family =
        |name: &str, kind: &str, help: &str, value: &dyn Fn(&Row) -> Option<String>| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for row in &rows {
                if let Some(v) = value(row) {
                    let _ = writeln!(out, "{name}{{channel=\"{}\"}} {v}", row.channel);
                }
            }
        };
    family(
        "shmcast_frames_total",
        "counter",
        "Frames published on the channel (its frame number).",
        &|r| Some(r.frames.to_string()),
    );
    family(
        "shmcast_dropped_frames_total",
        "counter",
        "Frames dropped because readers leased every free slot.",
        &|r| Some(r.dropped.to_string()),
    );
    family(
        "shmcast_leasers",
        "gauge",
        "Readers registered to lease frames (read-only readers are not counted).",
        &|r| r.leasers.map(|n| n.to_string()),
    );
    family(
        "shmcast_source_restarts_total",
        "counter",
        "Times the channel's source (ffmpeg) was started again after it failed or stalled.",
        &|r| Some(r.restarts.to_string()),
    );
    family(
        "shmcast_stalled",
        "gauge",
        "1 when the channel is stalled or its publisher gone, 0 when live.",
        &|r| Some(u8::from(r.stalled).to_string()),
    );
    family(
        "shmcast_frame_age_seconds",
        "gauge",
        "Seconds since the latest frame was published (NaN before the first).",
        &|r| {
            Some(if r.age.is_nan() {
                "NaN".to_owned()
            } else {
                format!("{:.3}", r.age)
            })
        },
    );
    out
}
