//! systemd's service notifications (`sd_notify(3)`), written out: one
//! datagram per message to the unix socket `NOTIFY_SOCKET` names (a path,
//! or an abstract name after `@`). A process started without it (not a
//! `Type=notify` unit) sends nothing.
//!
//! `serve` says `READY=1` once every channel is up or retrying, `STOPPING=1`
//! when it stops, `RELOADING=1` and `READY=1` around a reload, and, when
//! the unit sets `WatchdogSec=`, `WATCHDOG=1` every quarter of that period
//! for as long as every channel's loop is alive ([`Beats`]): a loop wedged in
//! anything but a wait for its source stops the pings, and systemd
//! restarts the service.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Sends `message` (`KEY=VALUE` lines) to systemd; false if there is no
/// socket or it cannot be reached (nothing to do about it either way).
#[cfg(target_os = "linux")]
pub fn send(message: &str) -> bool {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return false;
    };
    let bytes = socket.as_encoded_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name),
        None => SocketAddr::from_pathname(std::path::Path::new(&socket)),
    };
    let (Ok(addr), Ok(sock)) = (addr, UnixDatagram::unbound()) else {
        return false;
    };
    sock.send_to_addr(message.as_bytes(), &addr).is_ok()
}

#[cfg(not(target_os = "linux"))]
pub fn send(_message: &str) -> bool {
    false
}

/// The watchdog period the unit asks for (`WATCHDOG_USEC`, for this
/// process: `WATCHDOG_PID`, when set, must be ours).
pub fn watchdog_period() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse() != Ok(std::process::id()) {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// One channel loop's sign of life.
#[derive(Default)]
pub struct Beat {
    /// When the loop last went round, in ms since [`Beats`] began.
    last_ms: AtomicU64,
    /// Whether it is waiting for its source (a read from ffmpeg or stdin,
    /// which ffmpeg's own watchdog or the producer bounds): not a wedge.
    waiting: AtomicBool,
    epoch: Option<Instant>,
}

impl Beat {
    /// The loop went round.
    pub fn beat(&self) {
        if let Some(epoch) = self.epoch {
            self.last_ms
                .store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
    }

    /// The loop starts (true) or ends (false) waiting for its source.
    pub fn waiting(&self, waiting: bool) {
        self.beat();
        self.waiting.store(waiting, Ordering::Relaxed);
    }
}

/// Every channel loop's [`Beat`], and the thread that pings systemd's
/// watchdog while they all live.
pub struct Beats {
    epoch: Instant,
    beats: Mutex<Vec<Arc<Beat>>>,
}

impl Beats {
    pub fn new() -> Arc<Beats> {
        Arc::new(Beats {
            epoch: Instant::now(),
            beats: Mutex::new(Vec::new()),
        })
    }

    /// A beat for one more channel loop.
    pub fn add(&self) -> Arc<Beat> {
        let beat = Arc::new(Beat {
            epoch: Some(self.epoch),
            ..Beat::default()
        });
        beat.beat();
        self.beats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::clone(&beat));
        beat
    }

    /// Whether every loop went round within `limit`, or is waiting for its
    /// source. Loops that ended (their beat dropped by them) do not count.
    fn all_alive(&self, limit: Duration) -> bool {
        let now = self.epoch.elapsed().as_millis() as u64;
        let mut beats = self.beats.lock().unwrap_or_else(|e| e.into_inner());
        beats.retain(|b| Arc::strong_count(b) > 1);
        beats.iter().all(|b| {
            b.waiting.load(Ordering::Relaxed)
                || now.saturating_sub(b.last_ms.load(Ordering::Relaxed)) <= limit.as_millis() as u64
        })
    }

    /// Pings the watchdog while every loop lives, until `stop`: checked
    /// every quarter `period`, a loop silent for half of it stops the
    /// pings, so one missed check never makes systemd wait past `period`.
    pub fn ping_watchdog(self: &Arc<Beats>, period: Duration, stop: Arc<AtomicBool>) {
        let beats = Arc::clone(self);
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if beats.all_alive(period / 2) {
                    send("WATCHDOG=1");
                }
                std::thread::sleep(period / 4);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_that_stops_beating_stops_the_pings_unless_it_waits_for_its_source() {
        let beats = Beats::new();
        let a = beats.add();
        let b = beats.add();
        assert!(beats.all_alive(Duration::from_millis(100)));
        std::thread::sleep(Duration::from_millis(150));
        a.beat();
        assert!(!beats.all_alive(Duration::from_millis(100)), "b is silent");
        b.waiting(true);
        assert!(
            beats.all_alive(Duration::from_millis(100)),
            "b waits for its source"
        );
        b.waiting(false);
        std::thread::sleep(Duration::from_millis(150));
        a.beat();
        assert!(!beats.all_alive(Duration::from_millis(100)));
        drop(b);
        assert!(
            beats.all_alive(Duration::from_millis(100)),
            "b's loop ended"
        );
    }
}
