//! Clocks, CPU time, frame filling and statistics shared by every role.

use std::time::Duration;

/// CLOCK_MONOTONIC in ns: one clock for every process on the machine, so a
/// writer's stamp and a reader's "now" can be subtracted.
pub fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// CLOCK_REALTIME in ns: the clock of shmcast's frame timestamps.
pub fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A process's user + system CPU time, from /proc/PID/stat.
pub fn cpu_time_of(pid: u32) -> Duration {
    stat_cpu(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default())
}

fn stat_cpu(stat: &str) -> Duration {
    let rest = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// This process's user + system CPU time.
pub fn cpu_time() -> Duration {
    stat_cpu(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default())
}

/// What the writer does to make a frame: writes every byte (a capture
/// landing in memory), with the send time in the first 8 bytes.
pub fn fill(frame: &mut [u8], number: u64) {
    frame.fill(number as u8);
    stamp(frame);
}

/// Writes the current time into the first 8 bytes (if there are 8).
pub fn stamp(frame: &mut [u8]) {
    if let Some(head) = frame.get_mut(..8) {
        head.copy_from_slice(&now_ns().to_ne_bytes());
    }
}

/// The time written by `stamp`.
pub fn stamped(frame: &[u8]) -> u64 {
    frame
        .get(..8)
        .map_or(0, |h| u64::from_ne_bytes(h.try_into().unwrap()))
}

/// What a reader does with a frame in place: reads one byte of every cache
/// line, so the whole frame crosses into its cache, as any real use would.
pub fn touch(frame: &[u8]) -> u64 {
    let mut sum = 0u64;
    let mut i = 0;
    while i < frame.len() {
        sum = sum.wrapping_add(u64::from(frame[i]));
        i += 64;
    }
    std::hint::black_box(sum)
}

/// Latencies, kept to a bounded sample.
#[derive(Default)]
pub struct Latencies(pub Vec<u64>);

impl Latencies {
    pub fn push(&mut self, ns: u64) {
        if self.0.len() < 200_000 {
            self.0.push(ns);
        }
    }
}

/// The `q`-quantile (0..=1) of `values`, or 0 when empty.
pub fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let i = ((values.len() - 1) as f64 * q).round() as usize;
    values[i]
}

pub fn median(mut values: Vec<f64>) -> f64 {
    quantile(&mut values, 0.5)
}
