//! How many 64-byte publishes a second this OS allows: alone, and with a
//! reader that blocks in `wait_newer` on another thread. Made to compare
//! Windows builds under Wine, where every wake system call is a round trip
//! to wineserver, so that a publish that makes none stands out; the
//! benchmark proper is `scripts/bench` (Linux).
//!
//! ```sh
//! cargo run --release --example publish_rate
//! cargo run --release --example publish_rate --target x86_64-pc-windows-gnu
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmcast::{FrameMeta, Publisher, Subscriber};

/// Publishes for one second; returns publishes per second.
fn publish_for_a_second(publisher: &mut Publisher) -> Result<f64, shmcast::Error> {
    let started = Instant::now();
    let mut count = 0u64;
    while started.elapsed() < Duration::from_secs(1) {
        for _ in 0..100 {
            publisher.publish(&FrameMeta::raw(), &[7u8; 64])?;
        }
        count += 100;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let name = format!("publish-rate-{}", std::process::id());
    let mut publisher = Publisher::create(&name, 64)?;
    let alone = publish_for_a_second(&mut publisher)?;
    println!("alone: {alone:.0} publishes/s");

    let stop = Arc::new(AtomicBool::new(false));
    let woken = Arc::new(AtomicU64::new(0));
    let mut subscriber = Subscriber::open(&name)?;
    let reader = {
        let (stop, woken) = (stop.clone(), woken.clone());
        std::thread::spawn(move || {
            let mut seen = subscriber.latest_number();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(number) = subscriber.wait_newer(seen, Duration::from_millis(100)) {
                    seen = number;
                    woken.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let before = woken.load(Ordering::Relaxed);
    let started = Instant::now();
    let with_reader = publish_for_a_second(&mut publisher)?;
    let returns = (woken.load(Ordering::Relaxed) - before) as f64 / started.elapsed().as_secs_f64();
    println!("with a blocking reader: {with_reader:.0} publishes/s, its wait returned {returns:.0} times/s");
    stop.store(true, Ordering::Relaxed);
    reader.join().map_err(|_| "the reader panicked")?;
    Ok(())
}
