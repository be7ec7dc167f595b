//! What the importer says about what a peer sent: anyone who can put on
//! the key chooses those bytes and how often they come, so its text is
//! escaped and its repeats are counted, not printed.

use std::time::{Duration, Instant};

/// `text` from the wire made safe for a log line or a stall reason:
/// control characters (a newline that forges a line, an escape sequence
/// that clears the terminal) escaped as `\n`, `\u{1b}`; trailing white
/// space (decoders end some errors with a newline) dropped.
pub fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.trim_end().chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// One kind of event that may come in floods: the first is said at once,
/// then at most one summary per period, with a count and the last one.
pub struct Repeats {
    period: Duration,
    /// When the last line was said.
    said_at: Option<Instant>,
    /// Events since then not said.
    count: u64,
    last: String,
}

impl Repeats {
    pub fn new(period: Duration) -> Repeats {
        Repeats {
            period,
            said_at: None,
            count: 0,
            last: String::new(),
        }
    }

    /// An event at `now`: `Some(what)` to say now, or `None` when it is
    /// counted for the next [`summary`](Repeats::summary).
    pub fn note(&mut self, now: Instant, what: String) -> Option<String> {
        if self.count == 0 && self.said_at.is_none_or(|t| now - t >= self.period) {
            self.said_at = Some(now);
            return Some(what);
        }
        self.count += 1;
        self.last = what;
        None
    }

    /// When a period has passed since the last line and events came
    /// since: how many, over how long, and the last of them.
    pub fn summary(&mut self, now: Instant) -> Option<(u64, Duration, String)> {
        let said_at = self.said_at?;
        if self.count == 0 || now - said_at < self.period {
            return None;
        }
        self.said_at = Some(now);
        let count = std::mem::take(&mut self.count);
        Some((count, now - said_at, std::mem::take(&mut self.last)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_trailing_space_dropped() {
        assert_eq!(
            clean("x\nshmcast-zenoh: FORGED \x1b[2J\r\n"),
            "x\\nshmcast-zenoh: FORGED \\u{1b}[2J"
        );
        assert_eq!(clean("bad Huffman code\n"), "bad Huffman code");
        assert_eq!(clean("é ok\ttab"), "é ok\\ttab");
    }

    #[test]
    fn the_first_is_said_then_one_summary_per_period() {
        let t0 = Instant::now();
        let s = |secs: f64| t0 + Duration::from_secs_f64(secs);
        let mut r = Repeats::new(Duration::from_secs(10));
        assert_eq!(r.summary(s(0.0)), None);
        assert_eq!(r.note(s(0.0), "a".into()).as_deref(), Some("a"));
        for i in 0..1000 {
            assert_eq!(r.note(s(0.001 * f64::from(i)), format!("b{i}")), None);
        }
        assert_eq!(r.summary(s(9.9)), None);
        let (count, over, last) = r.summary(s(10.0)).unwrap();
        assert_eq!((count, over.as_secs(), last.as_str()), (1000, 10, "b999"));
        assert_eq!(r.summary(s(30.0)), None, "nothing new, nothing said");
        // Quiet for a period: the next is said at once again.
        assert_eq!(r.note(s(30.0), "c".into()).as_deref(), Some("c"));
        assert_eq!(r.note(s(31.0), "d".into()), None);
        assert_eq!(r.summary(s(40.0)).map(|s| s.0), Some(1));
    }
}
