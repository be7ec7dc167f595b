//! The growth curves as an SVG: frames/s per reader against frame size and
//! against reader count, shmcast beside the Unix socket, log scales.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::util::median;
use crate::Sample;

/// A curve: its label, colour and points.
type Line<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

const W: f64 = 520.0;
const H: f64 = 360.0;
const PAD: f64 = 60.0;

fn series(
    samples: &BTreeMap<String, Vec<Sample>>,
    key: impl Fn(&str) -> String,
    xs: &[usize],
) -> Vec<(f64, f64)> {
    xs.iter()
        .filter_map(|&x| {
            let v = samples.get(&key(&x.to_string()))?;
            let fps = median(v.iter().map(|s| s.reader_fps).collect());
            (fps > 0.0).then_some((x as f64, fps))
        })
        .collect()
}

fn panel(svg: &mut String, x0: f64, title: &str, xlabel: &str, lines: &[Line<'_>]) {
    let pts: Vec<(f64, f64)> = lines.iter().flat_map(|l| l.2.iter().copied()).collect();
    if pts.is_empty() {
        return;
    }
    let lx = |v: f64| v.max(1e-9).log10();
    let (xmin, xmax) = pts.iter().fold((f64::MAX, f64::MIN), |(a, b), p| {
        (a.min(lx(p.0)), b.max(lx(p.0)))
    });
    let (ymin, ymax) = pts.iter().fold((f64::MAX, f64::MIN), |(a, b), p| {
        (a.min(lx(p.1)), b.max(lx(p.1)))
    });
    let (ymin, ymax) = (ymin.floor(), ymax.ceil().max(ymin.floor() + 1.0));
    let sx = |v: f64| x0 + PAD + (lx(v) - xmin) / (xmax - xmin).max(1e-9) * (W - 2.0 * PAD);
    let sy = |v: f64| H - PAD - (lx(v) - ymin) / (ymax - ymin) * (H - 2.0 * PAD);
    let _ = write!(
        svg,
        r#"<text x="{}" y="24" font-size="15" text-anchor="middle">{title}</text>"#,
        x0 + W / 2.0
    );
    let _ = write!(
        svg,
        r##"<rect x="{}" y="{PAD}" width="{}" height="{}" fill="none" stroke="#888"/>"##,
        x0 + PAD,
        W - 2.0 * PAD,
        H - 2.0 * PAD
    );
    let mut decade = ymin;
    while decade <= ymax {
        let y = H - PAD - (decade - ymin) / (ymax - ymin) * (H - 2.0 * PAD);
        let _ = write!(
            svg,
            r##"<line x1="{}" x2="{}" y1="{y}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" font-size="11" text-anchor="end">1e{decade}</text>"##,
            x0 + PAD,
            x0 + W - PAD,
            x0 + PAD - 4.0,
            y + 4.0
        );
        decade += 1.0;
    }
    for &(x, _) in &lines[0].2 {
        let label = if x >= 1_048_576.0 {
            format!("{:.0}M", x / 1_048_576.0)
        } else if x >= 1024.0 {
            format!("{:.0}K", x / 1024.0)
        } else {
            format!("{x}")
        };
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" font-size="11" text-anchor="middle">{label}</text>"#,
            sx(x),
            H - PAD + 16.0
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" font-size="12" text-anchor="middle">{xlabel}</text>"#,
        x0 + W / 2.0,
        H - 18.0
    );
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" font-size="12" transform="rotate(-90 {} {})" text-anchor="middle">frames/s per reader</text>"#,
        x0 + 16.0,
        H / 2.0,
        x0 + 16.0,
        H / 2.0
    );
    for (i, (label, color, line)) in lines.iter().enumerate() {
        let path: Vec<String> = line
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        for &(x, y) in line {
            let _ = write!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#,
                sx(x),
                sy(y)
            );
        }
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" font-size="12" fill="{color}">{label}</text>"#,
            x0 + W - PAD - 110.0,
            PAD + 16.0 + 16.0 * i as f64
        );
    }
}

pub fn write(
    path: &Path,
    samples: &BTreeMap<String, Vec<Sample>>,
    sizes: &[usize],
    readers: &[usize],
) -> std::io::Result<()> {
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{H}" font-family="sans-serif">"#,
        2.0 * W
    );
    let _ = write!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let by_size = |who: &'static str| move |x: &str| format!("size {x}: {who}");
    let by_readers = |who: &'static str| move |x: &str| format!("readers {x}: {who}");
    panel(
        &mut svg,
        0.0,
        "1 reader, frame size varies",
        "frame bytes",
        &[
            (
                "shmcast (lease)",
                "#1f6feb",
                series(samples, by_size("shmcast"), sizes),
            ),
            (
                "unix socket",
                "#d1242f",
                series(samples, by_size("unix socket"), sizes),
            ),
        ],
    );
    panel(
        &mut svg,
        W,
        "6.2 MB frames, readers vary",
        "reader processes",
        &[
            (
                "shmcast (lease)",
                "#1f6feb",
                series(samples, by_readers("shmcast"), readers),
            ),
            (
                "unix socket",
                "#d1242f",
                series(samples, by_readers("unix socket"), readers),
            ),
        ],
    );
    svg.push_str("</svg>\n");
    std::fs::write(path, svg)
}
