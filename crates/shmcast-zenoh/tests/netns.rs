//! Two hosts on one machine: network namespaces joined by a veth pair,
//! made by the test itself (root only). The exporter runs in one, the
//! importer in the other; shared memory (/dev/shm) is common to both, so
//! the test publishes the source and reads the import itself.

#![cfg(target_os = "linux")]

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::{Duration, Instant};

use common::{unique, until_or, Bg, Source};
use shmcast::{FrameMeta, Health, PixelFormat, Subscriber, SubscriberOptions};

const SECOND: Duration = Duration::from_secs(1);

/// Two namespaces, `a` (10.N.M.1) and `b` (10.N.M.2), joined by veth
/// `dev_a` / `dev_b`; removed on drop.
struct Hosts {
    a: String,
    b: String,
    dev_a: String,
    addr_a: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Hosts {
    /// `None` (and a note on stderr) when this process may not make
    /// namespaces: not root, or no `ip`.
    fn make() -> Option<Hosts> {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Relaxed);
        let pid = std::process::id();
        let tag = format!("{}{n}", pid % 100_000);
        if !rustix::process::geteuid().is_root() {
            eprintln!(
                "skipped: making network namespaces needs root (scripts/test runs as root in CI)"
            );
            return None;
        }
        ip(&["netns", "add", &format!("zna{tag}")]);
        let hosts = Hosts {
            a: format!("zna{tag}"),
            b: format!("znb{tag}"),
            dev_a: format!("zva{tag}"),
            addr_a: format!("10.{}.{}.1", 200 + pid % 50, (pid / 50 % 50) * 5 + n),
        };
        let addr_b = format!("{}.2", hosts.addr_a.rsplit_once('.').unwrap().0);
        let dev_b = format!("zvb{tag}");
        ip(&["netns", "add", &hosts.b]);
        ip(&[
            "link",
            "add",
            &hosts.dev_a,
            "type",
            "veth",
            "peer",
            "name",
            &dev_b,
        ]);
        ip(&["link", "set", &hosts.dev_a, "netns", &hosts.a]);
        ip(&["link", "set", &dev_b, "netns", &hosts.b]);
        ip(&[
            "-n",
            &hosts.a,
            "addr",
            "add",
            &format!("{}/24", hosts.addr_a),
            "dev",
            &hosts.dev_a,
        ]);
        ip(&[
            "-n",
            &hosts.b,
            "addr",
            "add",
            &format!("{addr_b}/24"),
            "dev",
            &dev_b,
        ]);
        for (ns, dev) in [(&hosts.a, &hosts.dev_a), (&hosts.b, &dev_b)] {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        Some(hosts)
    }

    /// `shmcast-zenoh ARGS` inside namespace `ns`.
    fn bridge(&self, ns: &str, args: &[&str], what: &str) -> Bg {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_shmcast-zenoh")])
            .args(args);
        Bg::spawn(c, what)
    }

    fn export(&self, src: &str, key: &str, extra: &[&str]) -> Bg {
        let listen = format!("tcp/{}:7447", self.addr_a);
        let mut args = vec!["export", src, "--key", key, "--listen", &listen];
        args.extend_from_slice(extra);
        self.bridge(&self.a.clone(), &args, "the exporter (host a)")
    }

    /// An importer on host b that calls the link down after `link_timeout` s.
    fn import(&self, key: &str, dst: &str, link_timeout: &str) -> Bg {
        let connect = format!("tcp/{}:7447", self.addr_a);
        let args = [
            "import",
            key,
            dst,
            "--connect",
            &connect,
            "--link-timeout",
            link_timeout,
        ];
        self.bridge(&self.b.clone(), &args, "the importer (host b)")
    }

    /// Limits what host a sends to `rate` (tc's token bucket).
    fn limit(&self, rate: &str, burst: &str, latency: &str) {
        let (a, dev) = (self.a.as_str(), self.dev_a.as_str());
        ip(&[
            "netns", "exec", a, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", rate,
            "burst", burst, "latency", latency,
        ]);
    }

    fn link(&self, up: bool) {
        ip(&[
            "-n",
            &self.a,
            "link",
            "set",
            &self.dev_a,
            if up { "up" } else { "down" },
        ]);
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn reader(name: &str) -> Subscriber {
    Subscriber::open_with(name, &SubscriberOptions::new().wait(20 * SECOND)).unwrap()
}

#[test]
fn a_cut_link_shows_as_stalled_on_the_other_host_and_frames_resume() {
    let Some(hosts) = Hosts::make() else { return };
    let (src, dst) = (unique("cut-src"), unique("cut-dst"));
    let key = format!("shmcast-test/{src}");
    let meta = FrameMeta::new(64, 48, PixelFormat::Gray8);
    let _source = Source::start(&src, meta, vec![vec![9; 64 * 48]]);
    let _exporter = hosts.export(&src, &key, &[]);
    let mut importer = hosts.import(&key, &dst, "1");
    let mut sub = reader(&dst);
    sub.wait_newer(0, 20 * SECOND).unwrap();
    assert_eq!(sub.health(5 * SECOND), Health::Live);

    hosts.link(false);
    let cut = Instant::now();
    let reason = until_or(
        5 * SECOND,
        "the cut to show as a stall",
        &mut importer,
        || {
            sub.stall_reason()
                .filter(|r| r.contains("nothing from the exporter"))
        },
    );
    assert!(
        matches!(sub.health(5 * SECOND), Health::Stalled { .. }),
        "{reason}"
    );
    eprintln!(
        "link down: stalled after {:.1} s: {reason}",
        cut.elapsed().as_secs_f64()
    );
    std::thread::sleep(2 * SECOND);

    hosts.link(true);
    let back = Instant::now();
    let before = sub.latest_number();
    sub.wait_newer(before, 30 * SECOND).unwrap();
    until_or(5 * SECOND, "the stall to clear", &mut importer, || {
        (sub.health(5 * SECOND) == Health::Live && sub.stall_reason().is_none()).then_some(())
    });
    eprintln!(
        "link up: frames again after {:.1} s",
        back.elapsed().as_secs_f64()
    );
}

/// Frames of 1920x1080 rgb24, each different.
fn big_frames() -> Vec<Vec<u8>> {
    (0..4u8)
        .map(|k| {
            (0..1920 * 1080 * 3)
                .map(|i| (i as u8) ^ k.wrapping_mul(61))
                .collect()
        })
        .collect()
}

/// Over a link of 100 Mbit/s a 6 MB frame takes about a second (TCP over
/// a token bucket): frames arrive whole at the link's pace, the ones
/// between are skipped (never queued), and the source publishes at its own
/// pace throughout.
#[test]
fn big_frames_cross_a_slow_link_whole_and_the_latest_wins() {
    let Some(hosts) = Hosts::make() else { return };
    // Traffic from host a (the exporter's frames) leaves at 100 Mbit/s.
    hosts.limit("100mbit", "256kb", "100ms");
    let (src, dst) = (unique("slow-src"), unique("slow-dst"));
    let key = format!("shmcast-test/{src}");
    let frames = big_frames();
    let source = Source::start(
        &src,
        FrameMeta::new(1920, 1080, PixelFormat::Rgb24),
        frames.clone(),
    );
    let mut exporter = hosts.export(&src, &key, &[]);
    let importer = hosts.import(&key, &dst, "1");
    let mut sub = reader(&dst);
    let mut buf = vec![0; sub.max_frame_len()];
    let (mut seen, mut numbers) = (0, Vec::new());
    let started = Instant::now();
    while numbers.len() < 6 {
        sub.wait_newer(seen, 20 * SECOND)
            .unwrap_or_else(|e| panic!("{e}; importer: {:?}", importer.seen));
        let info = sub.read_latest(&mut buf).unwrap().unwrap();
        seen = info.number;
        assert!(
            buf[..info.len] == frames[(info.number as usize - 1) % frames.len()][..],
            "frame {} is not whole",
            info.number
        );
        numbers.push(info.number);
    }
    let took = started.elapsed();
    let source_latest = Subscriber::open(src.as_str()).unwrap().latest_number();
    let lag = source_latest - seen;
    eprintln!(
        "100 Mbit/s: 6 imported frames in {:.1} s, numbers {numbers:?}; source at {source_latest}, {lag} frames ahead",
        took.as_secs_f64()
    );
    // Skipped, not queued: frames between the imported ones never crossed,
    // and the import stays within about two frames' transfer (one on the
    // wire, one being read) of the source: a queue would fall behind by 28
    // frames every second.
    assert!(numbers.windows(2).any(|w| w[1] - w[0] > 1), "{numbers:?}");
    assert!(lag < 75, "the import fell {lag} frames behind");
    exporter.kill();
    drop(importer);

    // Why not Zenoh's CongestionControl::Drop: on the same link the same
    // frames never arrive whole (eclipse-zenoh/zenoh#2258). Said, not
    // asserted: it documents Zenoh's behaviour, not ours.
    let dropping_dst = unique("slow-drop");
    let _exporter = hosts.export(&src, &key, &["--congestion", "drop"]);
    let _importer = hosts.import(&key, &dropping_dst, "1");
    std::thread::sleep(5 * SECOND);
    let got = Subscriber::open(dropping_dst.as_str()).map_or(0, |s| s.latest_number());
    eprintln!("with CongestionControl::Drop: newest frame imported in 5 s: {got} (0: none)");
    drop(source);
}

/// A link so slow that one frame takes longer than Zenoh's default 5 s for
/// a blocked put (after which it closes the session): frames still arrive
/// whole, and the statuses, which overtake them, keep the importer from
/// calling a busy link down.
#[test]
fn a_frame_slower_than_five_seconds_still_arrives_and_the_link_is_not_called_down() {
    let Some(hosts) = Hosts::make() else { return };
    // 640x480 rgb24 (921,600 bytes) at 1 Mbit/s: about 7.5 s a frame.
    hosts.limit("1mbit", "32kb", "400ms");
    let (src, dst) = (unique("crawl-src"), unique("crawl-dst"));
    let key = format!("shmcast-test/{src}");
    let frames: Vec<Vec<u8>> = (0..3u8)
        .map(|k| {
            (0..640 * 480 * 3)
                .map(|i| (i as u8).wrapping_add(k * 85))
                .collect()
        })
        .collect();
    let meta = FrameMeta::new(640, 480, PixelFormat::Rgb24);
    let _source = Source::start(&src, meta, frames.clone());
    let _exporter = hosts.export(&src, &key, &[]);
    // A status may wait behind the exporter's TCP buffer and the link's
    // queue, about 1.4 s at 1 Mbit/s, and longer on a loaded machine: the
    // default link timeout (2 s) was seen to call the link down once in a
    // full CI run, so this gives it 3 s.
    let mut importer = hosts.import(&key, &dst, "3");
    let mut sub = reader(&dst);
    let mut buf = vec![0; sub.max_frame_len()];
    let started = Instant::now();
    let mut seen = 0;
    for _ in 0..2 {
        // Waiting in short steps, the link never shows as down.
        loop {
            assert_eq!(sub.stall_reason(), None, "{:?}", importer.seen);
            match sub.wait_newer(seen, SECOND / 4) {
                Ok(_) => break,
                Err(_) => assert!(started.elapsed() < 60 * SECOND, "{:?}", importer.seen),
            }
        }
        let info = sub.read_latest(&mut buf).unwrap().unwrap();
        assert!(
            buf[..info.len] == frames[(info.number as usize - 1) % frames.len()][..],
            "frame {} is not whole",
            info.number
        );
        seen = info.number;
    }
    importer.drain();
    assert!(
        !importer
            .seen
            .iter()
            .any(|l| l.contains("nothing from the exporter")),
        "{:?}",
        importer.seen
    );
    eprintln!(
        "1 Mbit/s: two 0.9 MB frames whole in {:.1} s, the link never called down",
        started.elapsed().as_secs_f64()
    );
}
