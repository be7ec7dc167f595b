//! Owns a channel and publishes frames written in place: the smallest useful
//! publisher. Run `cargo run --example reader` beside it.
//!
//! ```sh
//! cargo run --example publish -- demo 300
//! ```

use std::time::{Duration, Instant};

use shmcast::{ErrorKind, FrameMeta, PixelFormat, Publisher};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "demo".to_owned());
    let count: u64 = args.next().map_or(Ok(300), |n| n.parse())?;
    let (width, height) = (640, 480);
    let meta = FrameMeta::new(width, height, PixelFormat::Gray8);
    let len = meta.format.frame_len(width, height).expect("valid size");

    // Fails naming the pid if another live process publishes on `name`;
    // takes the channel over if that process died.
    let mut publisher = Publisher::create(&name, len)?;
    let started = Instant::now();
    for n in 0..count {
        // A slot of shared memory to fill in place: a capture would land
        // here directly. Dropping it instead would publish nothing.
        match publisher.loan(len) {
            Ok(mut frame) => {
                for (i, px) in frame.iter_mut().enumerate() {
                    *px = ((i % width as usize) as u64 + n) as u8;
                }
                frame.commit(&meta);
            }
            // Readers hold every free slot: skip this frame, never wait.
            Err(e) if e.kind() == ErrorKind::AllSlotsLeased => continue,
            Err(e) => return Err(e.into()),
        }
        std::thread::sleep(Duration::from_millis(33));
    }
    println!("published {count} frames in {:?}", started.elapsed());
    Ok(())
}
