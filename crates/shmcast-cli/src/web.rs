//! `shmcast web`: a read-only page for operators on the plant network,
//! showing every channel on this machine: a live preview, fps, frame
//! number, leasers, health and why it is stalled.
//!
//! - It only subscribes: every channel is opened read-only, nothing is
//!   written to a channel or its lease table.
//! - Previews are JPEG frames over plain HTTP (`/channel/NAME/frame.jpg`),
//!   which the page asks for again when the frame number moves. A frame is
//!   converted and encoded only when someone asks for it, and at most once
//!   for all viewers ([`Preview`] keeps the last one); a slow or vanished
//!   browser asks for nothing and so costs nothing.
//! - It listens on loopback unless told otherwise. Any other address needs
//!   `--token`, which every request must carry (`Authorization: Bearer T`,
//!   or `?token=T`, which the page passes on).
//! - HTTP is `tiny_http`: blocking, one thread per request, no async
//!   runtime. This command serves a handful of operators, the rest of the
//!   CLI is threads, and an async stack (axum/hyper on tokio) would be a
//!   second large dependency tree to build for both targets in every CI run.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use shmcast::{Kind, Name, Subscriber};
use tiny_http::{Header, Request, Response, Server};

/// At most this many requests at once (each is a thread); more get 503.
const MAX_REQUESTS: usize = 64;

/// The last preview of one channel.
#[derive(Default)]
struct Preview {
    last: Mutex<Option<Encoded>>,
}

/// A frame's JPEG, and which frame it is: the channel's instance and the
/// frame's number.
struct Encoded {
    instance: u64,
    number: u64,
    jpeg: Arc<Vec<u8>>,
}

struct State {
    token: Option<String>,
    /// The channels shown; none: every channel on this machine.
    only: Vec<Name>,
    previews: Mutex<HashMap<Name, Arc<Preview>>>,
    /// For each channel, its frame number when last asked, and when (fps).
    rates: Mutex<HashMap<Name, (u64, Instant, f64)>>,
    busy: AtomicUsize,
    /// JPEGs encoded so far (the page's footer, and the tests).
    encoded: AtomicUsize,
}

/// Runs the page on `listen` until the process is stopped, for the
/// channels `only` (none: every channel on this machine).
pub fn run(listen: &str, token: Option<String>, only: Vec<Name>) -> Result<(), String> {
    let addr: SocketAddr = listen
        .parse()
        .map_err(|_| format!("--listen {listen}: give an address and port, e.g. 127.0.0.1:8080"))?;
    if let Some(t) = &token {
        // Characters that need no escaping in a URL or in the page's script.
        let plain = |c: char| c.is_ascii_alphanumeric() || "-._~".contains(c);
        if t.len() < 8 || !t.chars().all(plain) {
            return Err("--token: give at least 8 of A-Z a-z 0-9 - . _ ~".to_owned());
        }
    }
    if !addr.ip().is_loopback() {
        if token.is_none() {
            return Err(format!(
                "--listen {addr} is reachable from other machines: give --token TOKEN too (every request \
                 must carry it), or listen on 127.0.0.1"
            ));
        }
        crate::log::warn(
            "",
            format!(
                "listening on {addr}, beyond this machine: whoever has the token sees every camera"
            ),
        );
    }
    let server = Server::http(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let state = Arc::new(State {
        token,
        only,
        previews: Mutex::new(HashMap::new()),
        rates: Mutex::new(HashMap::new()),
        busy: AtomicUsize::new(0),
        encoded: AtomicUsize::new(0),
    });
    let shown = if addr.ip().is_unspecified() {
        format!("port {}", addr.port())
    } else {
        format!("http://{addr}/")
    };
    crate::log::info("", format!("web page on {shown} (read-only)"));
    let _ = crate::output::print(|out| writeln_flush(out, &format!("web page on {shown}")));
    for request in server.incoming_requests() {
        if state.busy.fetch_add(1, Ordering::SeqCst) >= MAX_REQUESTS {
            state.busy.fetch_sub(1, Ordering::SeqCst);
            let _ = request.respond(Response::from_string("busy").with_status_code(503));
            continue;
        }
        let state = Arc::clone(&state);
        std::thread::spawn(move || {
            answer(&state, request);
            state.busy.fetch_sub(1, Ordering::SeqCst);
        });
    }
    Ok(())
}

fn writeln_flush(out: &mut impl std::io::Write, line: &str) -> std::io::Result<()> {
    writeln!(out, "{line}")?;
    out.flush()
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("a valid header")
}

/// The request's path and its `token=` query parameter.
fn split_url(url: &str) -> (&str, Option<&str>) {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let token = query.split('&').find_map(|kv| kv.strip_prefix("token="));
    (path, token)
}

fn authorized(state: &State, request: &Request, query_token: Option<&str>) -> bool {
    let Some(token) = &state.token else {
        return true;
    };
    let bearer = request.headers().iter().find_map(|h| {
        h.field
            .equiv("Authorization")
            .then(|| h.value.as_str().strip_prefix("Bearer ").map(str::to_owned))
            .flatten()
    });
    let given = bearer.as_deref().or(query_token);
    // Compared in constant time: the token is a password.
    given.is_some_and(|g| {
        g.len() == token.len()
            && g.bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    })
}

/// Without a token the page is for this machine only, and a request must
/// also name this machine as its host: a web page elsewhere that points
/// its own domain at 127.0.0.1 (DNS rebinding) reaches the port, but sends
/// its own domain as the Host.
fn local_host(request: &Request) -> bool {
    let Some(host) = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Host"))
        .map(|h| h.value.as_str().to_ascii_lowercase())
    else {
        return true; // HTTP/1.0 without Host: not a browser's request
    };
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.ends_with(':') => {
            name
        }
        _ => host.as_str(),
    };
    matches!(name, "127.0.0.1" | "localhost" | "[::1]")
}

/// A path segment with its `%XX` escapes decoded (a `Global\` name
/// arrives as `Global%5Ccam`); `None` if they are not valid UTF-8.
fn percent_decoded(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// A channel name for a URL: its `\` (of `Global\`) escaped.
fn in_url(name: &Name) -> String {
    name.to_string().replace('\\', "%5C")
}

fn answer(state: &State, request: Request) {
    let url = request.url().to_owned();
    let (path, query_token) = split_url(&url);
    if state.token.is_none() && !local_host(&request) {
        let _ = request.respond(
            Response::from_string("this page answers requests for 127.0.0.1 or localhost only")
                .with_status_code(403),
        );
        return;
    }
    if !authorized(state, &request, query_token) {
        let _ = request.respond(
            Response::from_string(
                "a token is needed: Authorization: Bearer TOKEN, or ?token=TOKEN",
            )
            .with_status_code(401),
        );
        return;
    }
    let token_query = state
        .token
        .as_ref()
        .map_or(String::new(), |t| format!("token={t}"));
    let response = match path {
        "/" => {
            let page = page(state, &token_query);
            Response::from_data(page.into_bytes())
                .with_header(header("Content-Type", "text/html; charset=utf-8"))
        }
        "/api/channels" => Response::from_data(channels_json(state).to_string().into_bytes())
            .with_header(header("Content-Type", "application/json")),
        _ => match path
            .strip_prefix("/channel/")
            .and_then(|rest| rest.strip_suffix("/frame.jpg"))
            .and_then(percent_decoded)
            .map(|n| Name::new(&n))
        {
            Some(Ok(name)) if !state.only.is_empty() && !state.only.contains(&name) => {
                Response::from_string("not one of the channels shown here").with_status_code(404)
            }
            Some(Ok(name)) => match preview(state, &name) {
                Ok(jpeg) => Response::from_data(jpeg.as_ref().clone())
                    .with_header(header("Content-Type", "image/jpeg")),
                Err(e) => Response::from_string(e).with_status_code(404),
            },
            Some(Err(e)) => Response::from_string(e.to_string()).with_status_code(400),
            None => Response::from_string("not found").with_status_code(404),
        },
    };
    let response = response.with_header(header("Cache-Control", "no-store"));
    // A browser that left is nothing to report.
    let _ = request.respond(response);
}

/// What the page and `/api/channels` say of one channel.
struct Seen {
    name: Name,
    health: &'static str,
    reason: Option<String>,
    fps: f64,
    frame: u64,
    leasers: Option<usize>,
    geometry: Option<String>,
}

/// Every channel on this machine, as seen now.
fn channels(state: &State) -> Vec<Seen> {
    let names: Vec<Name> = if state.only.is_empty() {
        let Ok(found) = shmcast::list() else {
            return Vec::new();
        };
        found
            .into_iter()
            .filter(|l| matches!(&l.info, Ok(info) if info.kind == Kind::Channel))
            .map(|l| l.name)
            .collect()
    } else {
        state.only.clone()
    };
    let mut seen = Vec::new();
    for name in names {
        let Ok(c) = shmcast::inspect_channel(&name) else {
            continue;
        };
        let now = Instant::now();
        let fps = {
            let mut rates = state.rates.lock().unwrap_or_else(|e| e.into_inner());
            let entry = rates
                .entry(name.clone())
                .or_insert((c.latest_frame, now, 0.0));
            let elapsed = now.duration_since(entry.1).as_secs_f64();
            if elapsed >= 0.5 {
                entry.2 = c.latest_frame.saturating_sub(entry.0) as f64 / elapsed;
                entry.0 = c.latest_frame;
                entry.1 = now;
            }
            entry.2
        };
        let health = crate::health_of(&c);
        let reason = match health {
            "stalled" => Some(
                c.stall_reason
                    .clone()
                    .unwrap_or_else(|| "it publishes nothing".to_owned()),
            ),
            "gone" => Some("its publisher is gone".to_owned()),
            _ => None,
        };
        let geometry = crate::latest_frame_info(&name)
            .map(|f| format!("{}x{} {}", f.meta.width, f.meta.height, f.meta.format));
        seen.push(Seen {
            name,
            health,
            reason,
            fps: if health == "live" { fps } else { 0.0 },
            frame: c.latest_frame,
            leasers: c.subscribers,
            geometry,
        });
    }
    seen.sort_by_key(|s| s.name.to_string());
    seen
}

fn channels_json(state: &State) -> serde_json::Value {
    let list: Vec<serde_json::Value> = channels(state)
        .into_iter()
        .map(|s| {
            serde_json::json!({
                "name": s.name.to_string(),
                "health": s.health,
                "stall_reason": s.reason,
                "fps": (s.fps * 10.0).round() / 10.0,
                "frame": s.frame,
                "leasers": s.leasers,
                "geometry": s.geometry,
            })
        })
        .collect();
    serde_json::json!({
        "channels": list,
        "previews_encoded": state.encoded.load(Ordering::Relaxed),
    })
}

/// Text for HTML: `<`, `>`, `&` and quotes escaped.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page: every channel rendered now (so it reads right without
/// script), then kept current by the script below.
fn page(state: &State, token_query: &str) -> String {
    let mut html = String::new();
    let amp = if token_query.is_empty() {
        String::new()
    } else {
        format!("&{token_query}")
    };
    let q = if token_query.is_empty() {
        String::new()
    } else {
        format!("?{token_query}")
    };
    let _ = write!(
        html,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>shmcast: channels on this machine</title>
<style>
body {{ font-family: sans-serif; margin: 1em; background: #f4f4f4; }}
.channels {{ display: flex; flex-wrap: wrap; gap: 1em; }}
section {{ background: white; padding: 0.5em 1em; border-radius: 6px; }}
img.preview {{ display: block; width: 320px; height: 240px; object-fit: contain; background: #222; }}
.health-live {{ color: #070; }} .health-stalled {{ color: #b60; }} .health-gone {{ color: #b00; }}
dl {{ display: grid; grid-template-columns: auto auto; margin: 0.5em 0; }} dd {{ margin: 0 0 0 1em; }}
</style></head>
<body><h1>shmcast: channels on this machine</h1>
<div class="channels" data-query="{}">
"#,
        escape(&amp)
    );
    let seen = channels(state);
    if seen.is_empty() {
        html.push_str("<p class=\"none\">No channels on this machine.</p>\n");
    }
    for s in &seen {
        let name = escape(&s.name.to_string());
        let _ = write!(
            html,
            r#"<section class="channel" data-name="{name}" data-frame="{frame}">
<h2>{name}</h2>
<img class="preview" alt="{name}" src="/channel/{url}/frame.jpg?n={frame}{amp}">
<dl>
<dt>health</dt><dd class="health health-{health}">{health}</dd>
<dt>reason</dt><dd class="reason">{reason}</dd>
<dt>fps</dt><dd class="fps">{fps:.1}</dd>
<dt>frame</dt><dd class="frame">{frame}</dd>
<dt>leasers</dt><dd class="leasers">{leasers}</dd>
<dt>frames</dt><dd class="geometry">{geometry}</dd>
</dl></section>
"#,
            frame = s.frame,
            url = escape(&in_url(&s.name)),
            amp = escape(&amp),
            health = s.health,
            reason = escape(s.reason.as_deref().unwrap_or("")),
            fps = s.fps,
            leasers = s.leasers.map_or("-".to_owned(), |n| n.to_string()),
            geometry = escape(s.geometry.as_deref().unwrap_or("no frame yet")),
        );
    }
    let _ = write!(
        html,
        r#"</div>
<script>
// Every second: the channels' state; a preview is fetched again when its
// frame number moved and the last one has loaded.
const query = document.querySelector('.channels').dataset.query;
const names = [...document.querySelectorAll('section.channel')].map(s => s.dataset.name).join(',');
async function refresh() {{
  try {{
    const r = await fetch('/api/channels{q}');
    const data = await r.json();
    if (data.channels.map(c => c.name).join(',') !== names) {{ location.reload(); return; }}
    for (const c of data.channels) {{
      const s = document.querySelector('section.channel[data-name="' + CSS.escape(c.name) + '"]');
      const set = (k, v) => {{ s.querySelector('.' + k).textContent = v; }};
      const h = s.querySelector('.health');
      h.textContent = c.health; h.className = 'health health-' + c.health;
      set('reason', c.stall_reason || ''); set('fps', c.fps.toFixed(1));
      set('frame', c.frame); set('leasers', c.leasers === null ? '-' : c.leasers);
      set('geometry', c.geometry || 'no frame yet');
      const img = s.querySelector('img.preview');
      if (String(c.frame) !== s.dataset.frame && img.complete) {{
        s.dataset.frame = c.frame;
        img.src = '/channel/' + encodeURIComponent(c.name) + '/frame.jpg?n=' + c.frame + query;
      }}
    }}
  }} catch (e) {{ /* the next round tries again */ }}
}}
setInterval(refresh, 1000);
</script>
</body></html>
"#
    );
    html
}

/// Channel `name`'s latest frame as a JPEG: the one made already if the
/// frame has not changed since, else converted and encoded now, once,
/// whoever else asks meanwhile (they wait for it).
fn preview(state: &State, name: &Name) -> Result<Arc<Vec<u8>>, String> {
    let subscriber = Subscriber::open(name).map_err(|e| crate::one_line(&e))?;
    // Only channels that exist get an entry (made-up names must not grow
    // the map), and channels that are gone lose theirs.
    let preview = {
        let mut previews = state.previews.lock().unwrap_or_else(|e| e.into_inner());
        previews.retain(|n, _| n == name || shmcast::inspect(n).is_ok());
        Arc::clone(previews.entry(name.clone()).or_default())
    };
    let mut last = preview.last.lock().unwrap_or_else(|e| e.into_inner());
    let latest = subscriber.latest_number();
    let instance = subscriber.instance();
    if let Some(e) = last.as_ref() {
        if e.instance == instance && e.number == latest {
            return Ok(Arc::clone(&e.jpeg));
        }
    }
    let Some((info, frame)) = subscriber
        .read_latest_vec()
        .map_err(|e| crate::one_line(&e))?
    else {
        return Err(format!("channel {name} has no frame yet"));
    };
    let mut rgb = Vec::new();
    shmcast::convert::to_rgb24(
        info.meta.format,
        info.meta.width,
        info.meta.height,
        info.meta.stride,
        &frame,
        &mut rgb,
    )
    .map_err(|e| format!("channel {name}: {e}"))?;
    let (w, h) = (info.meta.width, info.meta.height);
    if w > u32::from(u16::MAX) || h > u32::from(u16::MAX) {
        return Err(format!(
            "channel {name}: {w}x{h} is too large for a JPEG preview"
        ));
    }
    let mut jpeg = Vec::new();
    jpeg_encoder::Encoder::new(&mut jpeg, 80)
        .encode(&rgb, w as u16, h as u16, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| format!("channel {name}: cannot encode a JPEG: {e}"))?;
    state.encoded.fetch_add(1, Ordering::Relaxed);
    let jpeg = Arc::new(jpeg);
    *last = Some(Encoded {
        instance,
        number: info.number,
        jpeg: Arc::clone(&jpeg),
    });
    Ok(jpeg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_come_from_the_query_and_html_is_escaped() {
        assert_eq!(
            percent_decoded("Global%5Ccam"),
            Some("Global\\cam".to_owned())
        );
        assert_eq!(percent_decoded("a%5"), Some("a%5".to_owned()));
        assert_eq!(percent_decoded("%zz%41"), Some("%zzA".to_owned()));
        assert_eq!(percent_decoded("%\u{e9}x"), Some("%\u{e9}x".to_owned()));
        assert_eq!(in_url(&Name::new("Global\\cam").unwrap()), "Global%5Ccam");
        assert_eq!(split_url("/x?n=3&token=abc"), ("/x", Some("abc")));
        assert_eq!(split_url("/x"), ("/x", None));
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
