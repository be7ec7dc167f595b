//! Subscribes to a channel and prints what arrives: the smallest useful
//! reader. Try it beside `shmcast serve demo`:
//!
//! ```sh
//! cargo run --example subscribe -- demo 10
//! ```

use std::time::Duration;

use shmcast::{Health, Subscriber};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "demo".to_owned());
    let count: u64 = args.next().map_or(Ok(10), |n| n.parse())?;

    // Waits for the publisher if it has not started yet.
    let mut sub = Subscriber::open_wait(&name, Duration::from_secs(10))?;
    let mut seen = sub.latest_number();
    for _ in 0..count {
        match sub.wait_newer(seen, Duration::from_secs(2)) {
            Ok(latest) => seen = latest,
            Err(e) => {
                // Tell "camera disconnected" from "just slow".
                match sub.health(Duration::from_secs(2)) {
                    Health::Gone => eprintln!("{name}: the publisher is gone"),
                    Health::Truncated => eprintln!("{name}: its memory was truncated"),
                    Health::Stalled { idle } => eprintln!("{name}: no frame for {idle:?}"),
                    Health::Live => eprintln!("{name}: {e}"),
                }
                continue;
            }
        }
        // Read in place, read-only: sample one byte per 4 KiB, each copied
        // out of shared memory (a `&[u8]` there could change under us); the
        // result counts only if the publisher did not touch the frame
        // meanwhile (checked after the closure).
        let sampled = sub.read_in_place(|_, frame| {
            let mut byte = [0u8; 1];
            (0..frame.len())
                .step_by(4096)
                .filter_map(|i| frame.get(i..=i))
                .map(|b| {
                    b.copy_to(&mut byte);
                    u64::from(byte[0])
                })
                .sum::<u64>()
        })?;
        if let Some((info, sum)) = sampled {
            println!(
                "frame {} {}x{} {} {} bytes (sample sum {sum})",
                info.number, info.meta.width, info.meta.height, info.meta.format, info.len
            );
        }
    }
    Ok(())
}
