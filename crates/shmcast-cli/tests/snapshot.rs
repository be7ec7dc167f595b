//! `shmcast snapshot`: for every pixel format, the PNG's pixels against
//! ffmpeg's own conversion of the same raw frame to rgb24: exact for the
//! RGB formats, within 2 levels per channel for the YUV ones. ffmpeg is
//! asked to take chroma from the nearest sample, as shmcast does (by
//! default it interpolates, which moves sharp colour edges by up to 25
//! levels: a choice of filter, not an error in either).
#![cfg(target_os = "linux")]

mod common;

use common::{ffmpeg, shmcast, unique};
use shmcast::{FrameMeta, PixelFormat, Publisher};

const W: u32 = 96;
const H: u32 = 64;
/// Smooth colour gradients between four colours.
const SOURCE: &str = "gradients=size=96x64:seed=7:c0=red:c1=blue:c2=yellow:c3=green:nb_colors=4";

fn decode_png(path: &std::path::Path) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(
        (info.color_type, info.bit_depth),
        (png::ColorType::Rgb, png::BitDepth::Eight)
    );
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

#[test]
fn snapshots_of_every_format_match_ffmpegs_own_conversion() {
    let dir = std::env::temp_dir().join(unique("snap"));
    std::fs::create_dir_all(&dir).unwrap();
    for (format, tolerance) in [
        ("rgb24", 0),
        ("bgr24", 0),
        ("rgba", 0),
        ("bgra", 0),
        ("gray8", 0),
        ("yuyv", 2),
        ("nv12", 2),
        ("i420", 2),
    ] {
        let pf: PixelFormat = format.parse().unwrap();
        let ff = pf.ffmpeg_name().unwrap();
        let raw = ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            SOURCE,
            "-frames:v",
            "1",
            "-pix_fmt",
            ff,
            "-f",
            "rawvideo",
            "-",
        ]);
        assert_eq!(raw.len(), pf.frame_len(W, H).unwrap(), "{format}");
        let raw_path = dir.join(format!("{format}.raw"));
        std::fs::write(&raw_path, &raw).unwrap();
        let size = format!("{W}x{H}");
        let reference = ffmpeg(&[
            "-f",
            "rawvideo",
            "-pix_fmt",
            ff,
            "-s",
            &size,
            "-i",
            raw_path.to_str().unwrap(),
            "-sws_flags",
            "neighbor+full_chroma_int+accurate_rnd",
            "-pix_fmt",
            "rgb24",
            "-f",
            "rawvideo",
            "-",
        ]);

        let name = unique(&format!("snap-{format}"));
        let mut publisher = Publisher::create(&name, raw.len()).unwrap();
        publisher.publish(&FrameMeta::new(W, H, pf), &raw).unwrap();
        let png = dir.join(format!("{format}.png"));
        let out = shmcast()
            .args(["snapshot", &name])
            .arg(&png)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{format}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (w, h, pixels) = decode_png(&png);
        assert_eq!((w, h, pixels.len()), (W, H, reference.len()), "{format}");
        let worst = pixels
            .iter()
            .zip(&reference)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        eprintln!("{format}: largest difference from ffmpeg {worst}");
        assert!(
            worst <= tolerance,
            "{format}: differs from ffmpeg by up to {worst} levels"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_snapshot_of_nothing_says_why() {
    let out = shmcast()
        .args(["snapshot", &unique("none"), "/tmp/never.png"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no segment named"));
    let name = unique("empty");
    let _publisher = Publisher::create(&name, 16).unwrap();
    let out = shmcast()
        .args(["snapshot", &name, "/tmp/never.png"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no frame yet"));
    let out = shmcast()
        .args(["snapshot", &name, "/tmp/never.png", "--wait", "0.2"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let raw = Publisher::create(unique("raw"), 16);
    drop(raw);
}
