//! A reader that keeps going: start it before or after `shmcast serve
//! demo`, stop and restart the service, kill it, pause its source; the
//! reader goes on until you press Enter (or close its input).
//!
//! ```sh
//! cargo run --example reader -- demo          # a line per second: fps, frame, health
//! cargo run --example reader -- demo --md5    # a line per frame: number and MD5
//! ```

use std::io::BufRead;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use md5::Digest;
use shmcast::{Health, Next, Reader};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "demo".to_owned());
    let per_frame = args.next().as_deref() == Some("--md5");

    // Enter, or the end of input, stops the loop: nothing else does.
    let stop = Arc::new(AtomicBool::new(false));
    let stopper = Arc::clone(&stop);
    std::thread::spawn(move || {
        let _ = std::io::stdin().lock().read_line(&mut String::new());
        stopper.store(true, Ordering::Relaxed);
    });

    // Needs no channel yet: it waits for one, and follows the name when
    // the service restarts.
    let mut reader = Reader::new(&name)?;
    let mut pixels = Vec::new();
    let (mut frames, mut since) = (0u32, Instant::now());
    while !stop.load(Ordering::Relaxed) {
        match reader.next(Duration::from_millis(250)) {
            Ok(Next::Frame(frame)) => {
                // Copy the frame out (safe against a writer); trust the
                // copy only if the release says the frame stayed whole.
                let number = frame.info().number;
                pixels.resize(frame.bytes().len(), 0);
                frame.bytes().copy_to(&mut pixels);
                if frame.release().is_err() {
                    continue; // revoked while we copied: discard
                }
                frames += 1;
                if per_frame {
                    let md5: String = md5::Md5::digest(&pixels)
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect();
                    println!("frame {number} {md5}");
                }
            }
            Ok(Next::Health(health)) => println!("health {}", word(health)),
            Ok(Next::Idle) => {}
            // This call's trouble; the reader goes on.
            Err(e) => println!("error {e}"),
        }
        if !per_frame && since.elapsed() >= Duration::from_secs(1) {
            let fps = f64::from(frames) / since.elapsed().as_secs_f64();
            println!("{name}: {fps:.1} fps, health {}", word(reader.health()));
            (frames, since) = (0, Instant::now());
        }
    }
    println!("done");
    Ok(())
}

fn word(health: Health) -> &'static str {
    match health {
        Health::Live => "live",
        Health::Stalled { .. } => "stalled",
        Health::Gone => "gone",
        Health::Truncated => "truncated",
        Health::Missing => "missing",
    }
}
