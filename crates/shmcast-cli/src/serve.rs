//! `shmcast serve` and `shmcast publish`: the process that owns a channel
//! and fills it, from the built-in moving test pattern, raw frames on
//! stdin, or ffmpeg (a camera, see `ffmpeg.rs`). Frames are produced
//! straight into a loaned slot, so each one crosses memory once.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::notify::{self, Beat, Beats};

use shmcast::{ChannelOptions, CreateOptions, ErrorKind, FrameMeta, Name, PixelFormat, Publisher};

/// How long a SIGTERM waits for the main loop to stop on its own before
/// the handler removes the channel's name itself and exits (the loop may
/// be blocked reading a source that sends nothing).
const STOP_GRACE: Duration = Duration::from_millis(300);
/// At most one "dropping frames" line per this long.
const DROP_LOG_EVERY: Duration = Duration::from_secs(5);

use crate::one_line;

/// Where frames come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    /// A moving gradient with a bouncing square: runs anywhere, no device.
    Pattern,
    /// Raw frames on stdin, exactly one frame's bytes each (ffmpeg
    /// `-f rawvideo`); stops at EOF.
    Stdin,
    /// ffmpeg with the input arguments of --input (or --camera), restarted
    /// whenever it fails or stalls.
    Ffmpeg,
    /// Another channel, resized and converted (`shmcast derive`, or `from`
    /// in a config; the job's `derive` says how).
    #[value(skip)]
    Derive,
}

/// What to serve, and how.
#[derive(Debug, PartialEq)]
pub struct Job {
    pub meta: FrameMeta,
    /// Frames per second; 0 or none: as fast as the source delivers.
    pub fps: Option<f64>,
    pub slots: u32,
    pub mode: u32,
    /// Windows security descriptor of the channel (and its wake events).
    pub sddl: Option<String>,
    /// Who may lease: the lease table's mode and SDDL (default: as the
    /// channel's).
    pub lease_mode: Option<u32>,
    pub lease_sddl: Option<String>,
    pub source: Source,
    /// Stop after this many frames (the pattern runs until interrupted).
    pub frames: Option<u64>,
    /// ffmpeg's input arguments (source ffmpeg).
    pub input: Vec<String>,
    /// The ffmpeg to run.
    pub ffmpeg: String,
    /// How long ffmpeg may send nothing before it is stopped and started
    /// again (the first frame gets at least FIRST_FRAME_GRACE).
    pub stall_after: Duration,
    /// The group to give the channel to (Linux).
    pub group: Option<String>,
    /// What a derived channel is made from (source Derive).
    pub derive: Option<crate::derive::Derive>,
    /// Where a stdin source's per-frame metadata comes from (see
    /// `metadata.rs`).
    pub metadata: Option<std::path::PathBuf>,
    /// The most metadata a frame carries, bytes.
    pub max_metadata: usize,
}

/// How long a freshly started ffmpeg may take to deliver its first frame
/// (opening a camera can take seconds).
const FIRST_FRAME_GRACE: Duration = Duration::from_secs(5);

/// Creates (or takes over) channel `name` and fills it until the source
/// ends, `frames` are out, or Ctrl-C / SIGTERM.
pub fn run(name: &Name, job: &Job, metrics: Option<&str>) -> Result<(), String> {
    let stop = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let names = Arc::new(Mutex::new(vec![name.clone()]));
    on_signals(&stop, &finished, &names, None)?;
    if let Some(addr) = metrics {
        crate::metrics::start(addr, Arc::clone(&names))?;
    }
    let options = channel_options(name, job)?;
    let mut publisher = Publisher::create_with(name, &options).map_err(|e| one_line(&e))?;
    crate::status::show(std::slice::from_ref(name));
    let beats = Beats::new();
    let beat = beats.add();
    let pinging = Arc::new(AtomicBool::new(false));
    if let Some(period) = notify::watchdog_period() {
        beats.ping_watchdog(period, Arc::clone(&pinging));
    }
    notify::send(&format!("READY=1\nSTATUS=serving {name}"));
    let result = serve_channel(name, job, &mut publisher, &stop, &beat);
    notify::send("STOPPING=1");
    pinging.store(true, Ordering::SeqCst);
    finished.store(true, Ordering::SeqCst);
    drop(publisher);
    result
}

/// The channels of a config: what `config::load` gives.
pub type Channels = Vec<(Name, Job)>;

/// Where [`serve_all`] gets a new config on a reload (SIGHUP, or the
/// Windows service's parameter-change control), and the flag that asks
/// for one.
pub struct Reload {
    pub requested: Arc<AtomicBool>,
    pub load: Box<dyn Fn() -> Result<Channels, String>>,
}

/// Serves every channel of a config file (see `config.rs`), each on its own
/// thread: a channel whose source fails is stalled and retried, one that
/// cannot be created is retried every few seconds, and neither stops the
/// others. Runs until Ctrl-C / SIGTERM (or every channel has ended);
/// SIGHUP reloads the config (see [`serve_all`]).
pub fn run_config(
    load: impl Fn() -> Result<Channels, String> + 'static,
    metrics: Option<&str>,
) -> Result<(), String> {
    let channels = load()?;
    let stop = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let names = Arc::new(Mutex::new(Vec::new()));
    if let Some(addr) = metrics {
        crate::metrics::start(addr, Arc::clone(&names))?;
    }
    let reload = Reload {
        requested: Arc::new(AtomicBool::new(false)),
        load: Box::new(load),
    };
    on_signals(&stop, &finished, &names, Some(&reload.requested))?;
    let result = serve_all(channels, &stop, Some(reload), &names);
    finished.store(true, Ordering::SeqCst);
    result
}

/// A channel's thread, and the flag that stops it alone (a reload that
/// removes or changes it).
struct Served {
    name: Name,
    job: Arc<Job>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Result<(), String>>,
}

/// Counts the channels that are up (created, or retrying to be): `READY=1`
/// waits for all of them.
#[derive(Default)]
struct Ready {
    up: Mutex<usize>,
    changed: Condvar,
}

/// One channel's mark on [`Ready`]: made once, when it is up, or when its
/// thread ends before that.
struct Up {
    ready: Arc<Ready>,
    marked: bool,
}

impl Up {
    fn mark(&mut self) {
        if !std::mem::replace(&mut self.marked, true) {
            *self.ready.up.lock().unwrap_or_else(|e| e.into_inner()) += 1;
            self.ready.changed.notify_all();
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        self.mark();
    }
}

impl Ready {
    /// Waits until `n` channels are up, or `stop`.
    fn wait(&self, n: usize, stop: &AtomicBool) {
        let mut up = self.up.lock().unwrap_or_else(|e| e.into_inner());
        while *up < n && !stop.load(Ordering::SeqCst) {
            up = self
                .changed
                .wait_timeout(up, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// Starts channel `name`'s thread.
fn start(name: Name, job: Arc<Job>, beats: &Beats, ready: &Arc<Ready>) -> Served {
    let stop = Arc::new(AtomicBool::new(false));
    let beat = beats.add();
    let mut up = Up {
        ready: Arc::clone(ready),
        marked: false,
    };
    let thread = {
        let (name, job, stop) = (name.clone(), Arc::clone(&job), Arc::clone(&stop));
        std::thread::spawn(move || {
            let result = serve_until_stopped(&name, &job, &stop, &beat, &mut up);
            if let Err(e) = &result {
                crate::log::notable(crate::log::Level::Error, &name, e);
            }
            result
        })
    };
    Served {
        name,
        job,
        stop,
        thread,
    }
}

/// Stops `channels`, every one told before any is waited for, so that they
/// stop together (well within the signal handler's grace period): how
/// many ended with an error.
fn stop_all(channels: Vec<Served>) -> usize {
    for s in &channels {
        s.stop.store(true, Ordering::SeqCst);
    }
    channels
        .into_iter()
        .map(|s| s.thread.join())
        .filter(|r| !matches!(r, Ok(Ok(()))))
        .count()
}

/// Serves `channels` until `stop` (set by Ctrl-C, or by a service
/// manager's stop request) or until every one has ended. Tells systemd
/// `READY=1` once every channel is up or retrying, and pings its
/// watchdog while every channel's loop lives (`notify.rs`).
///
/// A reload (when `reload` is given and asked for) loads the config
/// again: a config that does not load is refused, and the running one
/// goes on; otherwise only the channels that were added, removed or
/// changed are started or stopped, and the others go on untouched, so
/// their readers see no gap. `names` is kept to the names being served
/// (the stop handler's last resort removes them).
pub fn serve_all(
    channels: Channels,
    stop: &Arc<AtomicBool>,
    reload: Option<Reload>,
    names: &Arc<Mutex<Vec<Name>>>,
) -> Result<(), String> {
    crate::status::show(&channels.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>());
    crate::log::info(
        "",
        format!("serving {} channels{}", channels.len(), ctrl_c_stops()),
    );
    let beats = Beats::new();
    let ready = Arc::new(Ready::default());
    let mut served: Vec<Served> = channels
        .into_iter()
        .map(|(name, job)| start(name, Arc::new(job), &beats, &ready))
        .collect();
    let set_names = |served: &[Served]| {
        *names.lock().unwrap_or_else(|e| e.into_inner()) =
            served.iter().map(|s| s.name.clone()).collect();
    };
    set_names(&served);
    ready.wait(served.len(), stop);
    notify::send(&format!(
        "READY=1\nSTATUS=serving {} channels",
        served.len()
    ));
    let pinging = Arc::new(AtomicBool::new(false));
    if let Some(period) = notify::watchdog_period() {
        beats.ping_watchdog(period, Arc::clone(&pinging));
    }
    let mut failed = 0;
    // The main loop beats too: a reload stuck waiting for a channel stops
    // the watchdog's pings.
    let main_beat = beats.add();
    while !stop.load(Ordering::SeqCst) {
        main_beat.beat();
        if let Some(reload) = reload
            .as_ref()
            .filter(|r| r.requested.swap(false, Ordering::SeqCst))
        {
            served = reloaded(served, reload, &beats, &ready, &mut failed);
            set_names(&served);
        }
        // Channels that ended by themselves (their frames are out, or an
        // error they cannot retry).
        let (ended, running): (Vec<_>, Vec<_>) =
            served.into_iter().partition(|s| s.thread.is_finished());
        served = running;
        failed += stop_all(ended);
        if served.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    notify::send("STOPPING=1");
    failed += stop_all(served);
    drop(main_beat);
    pinging.store(true, Ordering::SeqCst);
    if failed > 0 {
        return Err(format!(
            "{failed} channel(s) ended with an error (see above)"
        ));
    }
    Ok(())
}

/// Applies a reload to `served`: the channels now served.
fn reloaded(
    served: Vec<Served>,
    reload: &Reload,
    beats: &Beats,
    ready: &Arc<Ready>,
    failed: &mut usize,
) -> Vec<Served> {
    let new = match (reload.load)() {
        Ok(new) => new,
        Err(e) => {
            crate::log::notable(
                crate::log::Level::Error,
                "",
                format!("reload refused, the running config goes on: {e}"),
            );
            return served;
        }
    };
    notify::send("RELOADING=1");
    let (mut added, mut changed, mut removed, mut kept) = (0, 0, 0, 0);
    let before: Vec<Name> = served.iter().map(|s| s.name.clone()).collect();
    // Stopped first: a changed channel is the same name, started again.
    let mut still = Vec::new();
    let mut stopping = Vec::new();
    for s in served {
        match new.iter().find(|(name, _)| *name == s.name) {
            Some((_, job)) if *job == *s.job => {
                kept += 1;
                still.push(s);
            }
            Some(_) => {
                crate::log::info(&s.name, "config changed: restarting the channel");
                changed += 1;
                stopping.push(s);
            }
            None => {
                crate::log::info(&s.name, "removed from the config: stopping the channel");
                removed += 1;
                stopping.push(s);
            }
        }
    }
    *failed += stop_all(stopping);
    for (name, job) in new {
        if still.iter().any(|s| s.name == name) {
            continue;
        }
        if !before.contains(&name) {
            added += 1;
        }
        still.push(start(name, Arc::new(job), beats, ready));
    }
    crate::log::notable(
        crate::log::Level::Info,
        "",
        format!("reloaded: {kept} unchanged, {changed} changed, {added} added, {removed} removed"),
    );
    notify::send(&format!("READY=1\nSTATUS=serving {} channels", still.len()));
    still
}

/// "; Ctrl-C stops" for someone at a terminal; nothing in a service's log.
fn ctrl_c_stops() -> &'static str {
    use std::io::IsTerminal;
    if io::stderr().is_terminal() {
        "; Ctrl-C stops"
    } else {
        ""
    }
}

/// How long a channel that cannot be created waits before trying again.
const CREATE_RETRY: Duration = Duration::from_secs(3);

/// One channel of a service: created (retrying while it cannot be, say
/// while a previous instance still holds it), then served.
fn serve_until_stopped(
    name: &Name,
    job: &Job,
    stop: &Arc<AtomicBool>,
    beat: &Beat,
    up: &mut Up,
) -> Result<(), String> {
    let options = channel_options(name, job)?;
    let mut told = None;
    let mut publisher = loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        match Publisher::create_with(name, &options) {
            Ok(p) => break p,
            Err(e) => {
                up.mark(); // retrying counts as up
                let e = one_line(&e);
                if told.as_ref() != Some(&e) {
                    crate::log::warn(
                        name,
                        format!(
                            "cannot create the channel: {e}; trying again every {}s",
                            CREATE_RETRY.as_secs()
                        ),
                    );
                    told = Some(e);
                }
                pause(stop, CREATE_RETRY, beat);
            }
        }
    };
    up.mark();
    serve_channel(name, job, &mut publisher, stop, beat)
}

/// Stops every loop on Ctrl-C / SIGTERM, and on SIGHUP asks for a reload
/// when `reload` is given, else stops too (SIGHUP is a Unix thing). The
/// loops stop by themselves between frames; a source that sends nothing
/// keeps one blocked in a read, so after a grace period the handler lets
/// the `names` go itself and ends the process.
fn on_signals(
    stop: &Arc<AtomicBool>,
    finished: &Arc<AtomicBool>,
    names: &Arc<Mutex<Vec<Name>>>,
    reload: Option<&Arc<AtomicBool>>,
) -> Result<(), String> {
    let (stop, finished, names) = (stop.clone(), finished.clone(), names.clone());
    let stopping = move || {
        stop.store(true, Ordering::SeqCst);
        std::thread::sleep(STOP_GRACE);
        if !finished.load(Ordering::SeqCst) {
            let names = names.lock().unwrap_or_else(|e| e.into_inner()).clone();
            for name in &names {
                let _ = shmcast::remove_owned(name);
            }
            crate::log::warn(
                "",
                format!(
                    "stopped: removed {} channel(s) (a source was blocked)",
                    names.len()
                ),
            );
            std::process::exit(0);
        }
    };
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        // SIGHUP reloads a config; with none to reload it stops, as the
        // terminal's hang-up always did.
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
            .map_err(|e| format!("cannot handle signals: {e}"))?;
        let reload = reload.cloned();
        std::thread::spawn(move || {
            for signal in signals.forever() {
                match (signal, &reload) {
                    (SIGHUP, Some(reload)) => {
                        crate::log::info("", "SIGHUP: reloading the config");
                        reload.store(true, Ordering::SeqCst);
                    }
                    _ => stopping(),
                }
            }
        });
        Ok(())
    }
    #[cfg(not(unix))]
    {
        let _ = reload;
        ctrlc::set_handler(stopping).map_err(|e| format!("cannot install the Ctrl-C handler: {e}"))
    }
}

/// The channel's size, slots and permissions, from the job.
fn channel_options(name: &Name, job: &Job) -> Result<ChannelOptions, String> {
    let meta = job.meta;
    let frame_len = frame_len(name, &meta)?;
    let mut create = CreateOptions::new().mode(job.mode);
    if let Some(sddl) = &job.sddl {
        create = create.sddl(sddl);
    }
    let mut options = ChannelOptions::new(frame_len)
        .slots(job.slots)
        .max_metadata(job.max_metadata)
        .create_options(create);
    if job.lease_mode.is_some() || job.lease_sddl.is_some() {
        let mut leases = CreateOptions::new().mode(job.lease_mode.unwrap_or(job.mode));
        if let Some(sddl) = job.lease_sddl.as_ref().or(job.sddl.as_ref()) {
            leases = leases.sddl(sddl);
        }
        options = options.lease_options(leases);
    }
    Ok(options)
}

pub(crate) fn frame_len(name: &Name, meta: &FrameMeta) -> Result<usize, String> {
    meta.format
        .frame_len(meta.width, meta.height)
        .ok_or_else(|| {
            format!(
                "channel {name}: {}x{} is not a valid {} frame size",
                meta.width, meta.height, meta.format
            )
        })
}

/// Fills channel `name` through `publisher` until the source ends, the
/// job's frames are out, or `stop`.
fn serve_channel(
    name: &Name,
    job: &Job,
    publisher: &mut Publisher,
    stop: &Arc<AtomicBool>,
    beat: &Beat,
) -> Result<(), String> {
    let meta = job.meta;
    let frame_len = frame_len(name, &meta)?;
    let period = frame_period(job.fps)?;
    if let Some(group) = &job.group {
        set_group(name, group)?;
    }
    if let Some(pid) = publisher.took_over_from() {
        crate::log::warn(
            name,
            format!("took the channel over from pid {pid}, which died"),
        );
    }
    if let Some((pid, why)) = publisher.replaced() {
        crate::log::warn(
            name,
            format!("replaced the channel of dead pid {pid}: it had {why}"),
        );
    }
    if let Some(why) = publisher.leasing_problem() {
        crate::log::warn(
            name,
            format!("no lease table: {why}; subscribers can read, none can lease"),
        );
    }
    if job.source == Source::Pattern {
        // Serving is the job; a notice that nobody reads is no reason to stop.
        let _ = crate::output::print(|out| {
            writeln!(
                out,
                "serving {name}: {}x{} {} test pattern{}{}",
                meta.width,
                meta.height,
                meta.format,
                period.map_or(String::new(), |p| format!(
                    " at {:.3} fps",
                    1.0 / p.as_secs_f64()
                )),
                ctrl_c_stops()
            )
        });
    }
    if let Some(derive) = &job.derive {
        crate::derive::derive_loop(
            name,
            derive,
            &meta,
            period,
            job.frames,
            Some(publisher),
            stop,
            beat,
        )
    } else if job.source == Source::Ffmpeg {
        ffmpeg_loop(name, job, publisher, frame_len, stop, beat)
    } else {
        publish_loop(name, job, publisher, frame_len, period, stop, beat)
    }
}

/// Gives the channel's objects (its lease table and its wake word with
/// it) to group `group`, so that its members get the group bits of the
/// mode (Linux).
#[cfg(unix)]
fn set_group(name: &Name, group: &str) -> Result<(), String> {
    let gid = group_id(group)?;
    let channel = format!("/dev/shm/{}", shmcast::object_name(name));
    let objects = [
        channel.clone(),
        format!("{channel}~leases"),
        format!("{channel}~wake"),
    ];
    for (i, path) in objects.iter().enumerate() {
        if let Err(e) = std::os::unix::fs::chown(path, None, Some(gid)) {
            if i == 0 || e.kind() != io::ErrorKind::NotFound {
                return Err(format!("channel {name}: cannot give {path} to group {group}: {e} (the service must run as root or as a member of {group})"));
            }
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn set_group(name: &Name, _group: &str) -> Result<(), String> {
    Err(format!(
        "channel {name}: a group is for Linux; on Windows give the users access with an SDDL"
    ))
}

/// The number of group `group` (a name from /etc/group, or a number).
#[cfg(unix)]
fn group_id(group: &str) -> Result<u32, String> {
    if let Ok(gid) = group.parse() {
        return Ok(gid);
    }
    let groups = std::fs::read_to_string("/etc/group")
        .map_err(|e| format!("cannot read /etc/group: {e}"))?;
    groups
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 3 && f[0] == group)
                .then(|| f[2].parse().ok())
                .flatten()
        })
        .next()
        .ok_or_else(|| format!("no group named {group} in /etc/group"))
}

fn publish_loop(
    name: &Name,
    job: &Job,
    publisher: &mut Publisher,
    frame_len: usize,
    period: Option<Duration>,
    stop: &AtomicBool,
    beat: &Beat,
) -> Result<(), String> {
    let meta = job.meta;
    // Only a stdin source takes the process's one stdin lock: taken for
    // every channel, it made the first pattern channel of a config block
    // all the others.
    let mut stdin = matches!(job.source, Source::Stdin).then(|| io::stdin().lock());
    let mut records = match &job.metadata {
        Some(path) => {
            // A named pipe's open waits for its writer.
            beat.waiting(true);
            let opened = crate::metadata::Records::open(path, job.max_metadata);
            beat.waiting(false);
            Some(
                opened
                    .map_err(|e| format!("channel {name}: cannot open {}: {e}", path.display()))?,
            )
        }
        None => None,
    };
    let mut record = Vec::new();
    let mut told_no_metadata = false;
    let mut next = Instant::now();
    let (mut published, mut dropped) = (0u64, 0u64);
    let mut scratch = Vec::new();
    let mut last_drop_log: Option<Instant> = None;
    let mut told_truncated = false;
    while !stop.load(Ordering::SeqCst) && job.frames.is_none_or(|n| published + dropped < n) {
        beat.beat();
        if !told_truncated && publisher.lease_table_truncated() {
            told_truncated = true;
            crate::log::error(
                name,
                "a subscriber truncated the lease table; leases are no longer honoured \
                 (frames go on; leasing readers see their leases revoked)",
            );
        }
        let mut loan = match publisher.loan(frame_len) {
            Ok(loan) => Some(loan),
            // Subscribers lease every free slot: drop this frame, never wait.
            Err(e) if e.kind() == ErrorKind::AllSlotsLeased => {
                if last_drop_log.is_none_or(|t| t.elapsed() >= DROP_LOG_EVERY) {
                    last_drop_log = Some(Instant::now());
                    let by = e.pid().map_or("subscribers".to_owned(), |p| {
                        format!("subscribers (pid {p} among them)")
                    });
                    crate::log::warn(
                        name,
                        format!(
                            "dropping frames: every free slot is leased by {by} (leases that \
                             block the publisher longer than the max lease are revoked)"
                        ),
                    );
                }
                None
            }
            Err(e) => return Err(one_line(&e)),
        };
        match job.source {
            Source::Pattern => {
                if let Some(loan) = loan.as_mut() {
                    draw(loan, &meta, published + dropped);
                }
            }
            Source::Ffmpeg | Source::Derive => unreachable!("their own loops serve them"),
            Source::Stdin => {
                // With no slot, the frame's bytes are still read (and
                // discarded) so the stream stays aligned on frames.
                scratch.resize(if loan.is_some() { 0 } else { frame_len }, 0);
                let buf: &mut [u8] = match loan.as_mut() {
                    Some(loan) => loan,
                    None => &mut scratch,
                };
                let stdin = stdin.as_mut().expect("a stdin source holds the stdin lock");
                beat.waiting(true);
                let got = read_full(stdin, buf);
                beat.waiting(false);
                let got = got.map_err(|e| format!("reading stdin for {name}: {e}"))?;
                if got == 0 {
                    break;
                }
                if got < frame_len {
                    return Err(format!(
                        "channel {name}: the last frame is short ({got} of {frame_len} bytes) and \
                         was not published; check --width, --height and --format against the producer"
                    ));
                }
                if let Some(records) = records.as_mut() {
                    beat.waiting(true);
                    let more = records.next(&mut record);
                    beat.waiting(false);
                    let more = more.map_err(|e| {
                        format!(
                            "channel {name}: the metadata of frame {}: {e}",
                            published + dropped + 1
                        )
                    })?;
                    if !more && !told_no_metadata {
                        told_no_metadata = true;
                        crate::log::warn(
                            name,
                            "the metadata file ended: the frames from here on have none",
                        );
                    }
                    if let Some(loan) = loan.as_mut() {
                        // At most max_metadata: `Records` checked it.
                        loan.set_metadata(&record).map_err(|e| one_line(&e))?;
                    }
                }
            }
        }
        if let Some(period) = period {
            next += period;
            let now = Instant::now();
            match next.checked_duration_since(now) {
                // In short steps that watch `stop` (a slow rate must not
                // hold up a stop or a reload) and beat.
                Some(wait) => pause(stop, wait, beat),
                // Behind by more than a frame (the process was stopped, or
                // the machine busy): pace from now, no burst of catch-up
                // frames.
                None if now.duration_since(next) > period => next = now,
                None => {}
            }
        }
        match loan {
            Some(loan) => {
                loan.commit(&meta);
                published += 1;
            }
            None => dropped += 1,
        }
    }
    if dropped > 0 {
        crate::log::warn(
            name,
            format!(
                "dropped {dropped} frames: subscribers leased every free slot (try more --slots)"
            ),
        );
    }
    crate::log::info(name, format!("published {published} frames"));
    Ok(())
}

/// Runs ffmpeg and publishes its frames until `stop` or `job.frames`;
/// when ffmpeg fails, ends or sends nothing for `job.stall_after`, says so
/// on the channel ([`Publisher::report_stall`]) and starts it again after
/// a pause that doubles up to [`crate::ffmpeg::MAX_BACKOFF`] (back to the first
/// after a frame arrives).
fn ffmpeg_loop(
    name: &Name,
    job: &Job,
    publisher: &mut Publisher,
    frame_len: usize,
    stop: &Arc<AtomicBool>,
    beat: &Beat,
) -> Result<(), String> {
    use crate::ffmpeg;
    use std::sync::atomic::AtomicU64;
    let args = ffmpeg::command_line(&job.ffmpeg, &job.input, &job.meta)
        .map_err(|e| format!("channel {name}: {e}"))?;
    let tag = name.to_string();
    let clock = Instant::now();
    let now_ms = move || clock.elapsed().as_millis() as u64;
    let mut backoff = ffmpeg::FIRST_BACKOFF;
    let (mut published, mut dropped) = (0u64, 0u64);
    let mut scratch = Vec::new();
    let done = |published: u64| job.frames.is_some_and(|n| published >= n);
    // A camera that is not there fails the same way every few seconds: it
    // is said once, and counted.
    let mut repeats = crate::log::Repeats::default();
    // ffmpeg's own lines are not said again while a failure repeats.
    let quiet = Arc::new(AtomicBool::new(false));
    let restarts = crate::metrics::restarts(name);
    let mut first = true;
    while !stop.load(Ordering::SeqCst) && !done(published) {
        if !std::mem::take(&mut first) {
            restarts.fetch_add(1, Ordering::Relaxed);
        }
        quiet.store(repeats.failing(), Ordering::Relaxed);
        let mut running = match ffmpeg::Running::start(&args, &tag, &quiet) {
            Ok(running) => running,
            Err(e) => {
                let reason = format!("cannot start {}: {e}", args[0]);
                stall(publisher, &tag, &reason, backoff, &mut repeats);
                pause(stop, backoff, beat);
                backoff = (backoff * 2).min(ffmpeg::MAX_BACKOFF);
                continue;
            }
        };
        if !repeats.failing() {
            crate::log::info(
                &tag,
                format!("ffmpeg started (pid {}): {}", running.pid, args.join(" ")),
            );
        }
        // The watchdog stops an ffmpeg that sends nothing for too long.
        let last_frame = Arc::new(AtomicU64::new(now_ms()));
        let ended = Arc::new(AtomicBool::new(false));
        let silenced = Arc::new(AtomicBool::new(false));
        let watchdog = {
            let (last_frame, ended, silenced) =
                (last_frame.clone(), ended.clone(), silenced.clone());
            let child = running.child.clone();
            let (stall_after, first) = (job.stall_after, job.stall_after.max(FIRST_FRAME_GRACE));
            let started_at = last_frame.load(Ordering::SeqCst);
            let stop = Arc::clone(stop);
            std::thread::spawn(move || {
                while !ended.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(50));
                    // Stopping: ffmpeg goes now (it holds the camera), not
                    // when it next sends a frame.
                    if stop.load(Ordering::SeqCst) {
                        let _ = child.lock().unwrap_or_else(|e| e.into_inner()).kill();
                        return;
                    }
                    let last = last_frame.load(Ordering::SeqCst);
                    let limit = if last == started_at {
                        first
                    } else {
                        stall_after
                    };
                    if now_ms().saturating_sub(last) > limit.as_millis() as u64 {
                        silenced.store(true, Ordering::SeqCst);
                        let _ = child.lock().unwrap_or_else(|e| e.into_inner()).kill();
                        return;
                    }
                }
            })
        };
        let mut stdout = running.take_stdout();
        let mut got_any = false;
        while !stop.load(Ordering::SeqCst) && !done(published) {
            beat.beat();
            let mut loan = match publisher.loan(frame_len) {
                Ok(loan) => Some(loan),
                Err(e) if e.kind() == ErrorKind::AllSlotsLeased => None,
                Err(e) => {
                    ended.store(true, Ordering::SeqCst);
                    let _ = running.child.lock().map(|mut c| c.kill());
                    return Err(one_line(&e));
                }
            };
            scratch.resize(if loan.is_some() { 0 } else { frame_len }, 0);
            let buf: &mut [u8] = match loan.as_mut() {
                Some(loan) => loan,
                None => &mut scratch,
            };
            // Bounded by the watchdog above, which stops a silent ffmpeg.
            beat.waiting(true);
            let got = read_full(&mut stdout, buf);
            beat.waiting(false);
            match got {
                Ok(n) if n == frame_len => {}
                _ => break, // ended, killed, or a short last frame
            }
            match loan {
                Some(loan) => {
                    loan.commit(&job.meta);
                    published += 1;
                }
                None => dropped += 1,
            }
            last_frame.store(now_ms(), Ordering::SeqCst);
            if !got_any {
                got_any = true;
                backoff = ffmpeg::FIRST_BACKOFF;
                quiet.store(false, Ordering::Relaxed);
                if let Some(what) = repeats.recovered() {
                    crate::log::notable(
                        crate::log::Level::Info,
                        &tag,
                        format!(
                            "recovered: frames from ffmpeg (pid {}) after {what}",
                            running.pid
                        ),
                    );
                }
            }
        }
        ended.store(true, Ordering::SeqCst);
        let child = running.child.clone();
        let _ = child.lock().map(|mut c| c.kill());
        let _ = watchdog.join();
        let status = child
            .lock()
            .map(|mut c| c.wait().map_or_else(|e| e.to_string(), |s| s.to_string()))
            .unwrap_or_default();
        if stop.load(Ordering::SeqCst) || done(published) {
            break;
        }
        let reason = if silenced.load(Ordering::SeqCst) {
            format!(
                "ffmpeg sent no frame for {:.1}s and was stopped",
                if got_any {
                    job.stall_after
                } else {
                    job.stall_after.max(FIRST_FRAME_GRACE)
                }
                .as_secs_f64()
            )
        } else {
            match running.last_error() {
                Some(line) => format!("ffmpeg ended ({status}): {line}"),
                None => format!("ffmpeg ended ({status})"),
            }
        };
        stall(publisher, &tag, &reason, backoff, &mut repeats);
        pause(stop, backoff, beat);
        backoff = (backoff * 2).min(ffmpeg::MAX_BACKOFF);
    }
    if let Some(what) = repeats.recovered() {
        crate::log::notable(
            crate::log::Level::Warn,
            &tag,
            format!("stopped while stalled: {what}"),
        );
    }
    if dropped > 0 {
        crate::log::warn(
            &tag,
            format!("dropped {dropped} frames: subscribers leased every free slot"),
        );
    }
    crate::log::info(&tag, format!("published {published} frames"));
    Ok(())
}

/// Marks the channel stalled for `reason`, and says so unless it is the
/// same failure as last time (`repeats` counts those).
fn stall(
    publisher: &mut Publisher,
    tag: &str,
    reason: &str,
    retry_in: Duration,
    repeats: &mut crate::log::Repeats,
) {
    publisher.report_stall(reason);
    if let Some(said) = repeats.failed(reason) {
        crate::log::notable(
            crate::log::Level::Warn,
            tag,
            format!(
                "stalled: {said}; starting ffmpeg again in {:.1}s, then less often (every {}s \
                 at most); the same failure again is counted, not repeated",
                retry_in.as_secs_f64(),
                crate::ffmpeg::MAX_BACKOFF.as_secs()
            ),
        );
    }
}

/// Sleeps `how_long`, or less if `stop` is set meanwhile.
pub(crate) fn pause(stop: &AtomicBool, how_long: Duration, beat: &Beat) {
    let until = Instant::now() + how_long;
    while !stop.load(Ordering::SeqCst) {
        beat.beat();
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// The time between frames for `fps` frames per second: `None` (unpaced)
/// for 0 or none; an error for negative, NaN, infinite or absurdly slow
/// rates.
pub fn frame_period(fps: Option<f64>) -> Result<Option<Duration>, String> {
    /// A million frames a second: above that a period rounds towards
    /// nothing, and no source delivers it anyway.
    const MAX_FPS: f64 = 1e6;
    match fps {
        None => Ok(None),
        Some(0.0) => Ok(None),
        Some(f) if f.is_finite() && f > MAX_FPS => Err(format!(
            "--fps {} is faster than any source; give at most {MAX_FPS} (0: as fast as the source)",
            shmcast_args::number(f)
        )),
        Some(f) if f.is_finite() && f > 0.0 => Duration::try_from_secs_f64(1.0 / f)
            .ok()
            .filter(|p| *p <= Duration::from_secs(24 * 3600))
            .map(Some)
            .ok_or_else(|| {
                format!(
                    "--fps {} is too slow; give at least one frame a day",
                    shmcast_args::number(f)
                )
            }),
        Some(f) => Err(format!(
            "--fps {} is not a frame rate; give a positive number (0: as fast as the source)",
            shmcast_args::number(f)
        )),
    }
}

/// Reads until `buf` is full or EOF; returns how many bytes it got.
pub(crate) fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// How the pattern's first pixels of a row are made: (row, y, pixels)
/// writes pixels 0..pixels of row y.
type RowStart<'a> = dyn Fn(&mut [u8], usize, usize) + 'a;

/// Frame `t` of the test pattern: a diagonal gradient that scrolls, with a
/// white square bouncing across it, in any of the supported formats.
///
/// Pixel (x, y) of frame t is red `x + t`, green `y + 2t`, blue
/// `(x + y) / 2` (each mod 256), or white inside the square. That repeats
/// every 512 pixels along a row and every 512 rows down the frame, so
/// only a 512x512 corner is computed and the rest copied (well under a
/// millisecond for a 1080p frame, where computing every pixel took six).
pub fn draw(frame: &mut [u8], meta: &FrameMeta, t: u64) {
    /// Pixels after which a row repeats: red's period (256) divides it,
    /// and blue's, (x + y) / 2 mod 256, is 512.
    const PERIOD: usize = 512;
    let (w, h) = (meta.width as usize, meta.height as usize);
    let side = (w.min(h) / 6).max(1);
    let (bx, by) = (
        bounce(t * 7, w - side.min(w)),
        bounce(t * 5, h - side.min(h)),
    );
    let t = t as usize;
    let rgb =
        |x: usize, y: usize| -> [u8; 3] { [(x + t) as u8, (y + 2 * t) as u8, ((x + y) / 2) as u8] };
    let luma = |[r, g, b]: [u8; 3]| -> u8 {
        ((u32::from(r) * 77 + u32::from(g) * 150 + u32::from(b) * 29) >> 8) as u8
    };
    // Bytes per row, and how one row's first pixels are made: (row, y,
    // pixels) writes pixels 0..pixels of row y.
    let (row_len, first): (usize, &RowStart) = match meta.format {
        PixelFormat::Rgb24 | PixelFormat::Bgr24 | PixelFormat::Rgba | PixelFormat::Bgra => {
            let bpp = if matches!(meta.format, PixelFormat::Rgba | PixelFormat::Bgra) {
                4
            } else {
                3
            };
            let swap = matches!(meta.format, PixelFormat::Bgr24 | PixelFormat::Bgra);
            (w * bpp, &move |row: &mut [u8], y: usize, n: usize| {
                for (x, px) in row[..n * bpp].chunks_exact_mut(bpp).enumerate() {
                    let [r, g, b] = rgb(x, y);
                    let (first, third) = if swap { (b, r) } else { (r, b) };
                    px[0] = first;
                    px[1] = g;
                    px[2] = third;
                    if bpp == 4 {
                        px[3] = 255;
                    }
                }
            })
        }
        PixelFormat::Yuyv => (w * 2, &|row: &mut [u8], y: usize, n: usize| {
            for (i, pair) in row[..n * 2].chunks_exact_mut(4).enumerate() {
                pair.copy_from_slice(&[luma(rgb(2 * i, y)), 128, luma(rgb(2 * i + 1, y)), 128]);
            }
        }),
        // Gray8, and the luma plane of Nv12 and I420 (neutral chroma below).
        _ => (w, &|row: &mut [u8], y: usize, n: usize| {
            for (x, px) in row[..n].iter_mut().enumerate() {
                *px = luma(rgb(x, y));
            }
        }),
    };
    let rows = frame.len().checked_div(row_len).map_or(0, |r| r.min(h));
    let bpp = row_len / w.max(1);
    let period = PERIOD.min(w);
    // Rows repeat every 512 too (green is y + 2t, blue (x + y) / 2): the
    // first 512 rows are made, the rest copied from them.
    let made = rows.min(PERIOD);
    for (y, row) in frame
        .chunks_exact_mut(row_len.max(1))
        .take(made)
        .enumerate()
    {
        first(row, y, period);
        // The rest of the row: copies of what is there, doubling.
        let mut filled = period * bpp;
        while filled > 0 && filled < row_len {
            let n = filled.min(row_len - filled);
            row.copy_within(..n, filled);
            filled += n;
        }
    }
    let (mut filled, all) = (made * row_len, rows * row_len);
    while filled > 0 && filled < all {
        let n = filled.min(all - filled);
        frame.copy_within(..n, filled);
        filled += n;
    }
    // The square, over the copies.
    for row in frame
        .chunks_exact_mut(row_len.max(1))
        .take(rows)
        .skip(by)
        .take(side)
    {
        for x in bx.min(w)..(bx + side).min(w) {
            match meta.format {
                PixelFormat::Yuyv => row[x * 2] = 255,
                _ => row[x * bpp..x * bpp + bpp].fill(255),
            }
        }
    }
    if !matches!(
        meta.format,
        PixelFormat::Rgb24
            | PixelFormat::Bgr24
            | PixelFormat::Rgba
            | PixelFormat::Bgra
            | PixelFormat::Gray8
            | PixelFormat::Yuyv
    ) {
        if let Some(chroma) = frame.get_mut((w * h).min(frame.len())..) {
            chroma.fill(128);
        }
    }
}

/// Position `t` of something bouncing between 0 and `span`.
fn bounce(t: u64, span: usize) -> usize {
    if span == 0 {
        return 0;
    }
    let period = 2 * span as u64;
    let p = (t % period) as usize;
    if p <= span {
        p
    } else {
        2 * span - p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pattern as it was first written, a pixel at a time: what `draw`
    /// must still draw.
    fn draw_each_pixel(frame: &mut [u8], meta: &FrameMeta, t: u64) {
        let (w, h) = (meta.width as usize, meta.height as usize);
        let side = (w.min(h) / 6).max(1);
        let (bx, by) = (
            bounce(t * 7, w - side.min(w)),
            bounce(t * 5, h - side.min(h)),
        );
        let in_box = |x: usize, y: usize| x >= bx && x < bx + side && y >= by && y < by + side;
        let t = t as usize;
        let rgb = |x: usize, y: usize| -> [u8; 3] {
            if in_box(x, y) {
                [255, 255, 255]
            } else {
                [(x + t) as u8, (y + 2 * t) as u8, ((x + y) / 2) as u8]
            }
        };
        let luma = |x: usize, y: usize| -> u8 {
            let [r, g, b] = rgb(x, y);
            ((u32::from(r) * 77 + u32::from(g) * 150 + u32::from(b) * 29) >> 8) as u8
        };
        match meta.format {
            PixelFormat::Rgb24 | PixelFormat::Bgr24 | PixelFormat::Rgba | PixelFormat::Bgra => {
                let bpp = if matches!(meta.format, PixelFormat::Rgba | PixelFormat::Bgra) {
                    4
                } else {
                    3
                };
                for (i, px) in frame.chunks_exact_mut(bpp).enumerate() {
                    let [r, g, b] = rgb(i % w, i / w);
                    let (first, third) =
                        if matches!(meta.format, PixelFormat::Bgr24 | PixelFormat::Bgra) {
                            (b, r)
                        } else {
                            (r, b)
                        };
                    px[0] = first;
                    px[1] = g;
                    px[2] = third;
                    if bpp == 4 {
                        px[3] = 255;
                    }
                }
            }
            PixelFormat::Gray8 => {
                for (i, px) in frame.iter_mut().enumerate() {
                    *px = luma(i % w, i / w);
                }
            }
            PixelFormat::Yuyv => {
                for (i, pair) in frame.chunks_exact_mut(4).enumerate() {
                    let (x, y) = ((2 * i) % w, (2 * i) / w);
                    pair.copy_from_slice(&[luma(x, y), 128, luma(x + 1, y), 128]);
                }
            }
            // Nv12, I420: a luma plane, then neutral chroma.
            _ => {
                let (y_plane, chroma) = frame.split_at_mut((w * h).min(frame.len()));
                for (i, px) in y_plane.iter_mut().enumerate() {
                    *px = luma(i % w, i / w);
                }
                chroma.fill(128);
            }
        }
    }

    #[test]
    fn the_pattern_is_the_same_as_drawn_a_pixel_at_a_time() {
        for format in [
            "rgb24", "bgr24", "rgba", "bgra", "gray8", "yuyv", "nv12", "i420",
        ] {
            let format: PixelFormat = format.parse().unwrap();
            for (w, h) in [(64, 48), (1280, 720), (1030, 300), (2, 2), (600, 1)] {
                let Some(len) = format.frame_len(w, h) else {
                    continue;
                };
                let meta = FrameMeta::new(w, h, format);
                for t in [0, 1, 77, 1000] {
                    let (mut a, mut b) = (vec![7u8; len], vec![7u8; len]);
                    draw(&mut a, &meta, t);
                    draw_each_pixel(&mut b, &meta, t);
                    assert!(a == b, "{format} {w}x{h} frame {t} differs");
                }
            }
        }
    }

    #[test]
    fn the_pattern_fills_every_format_and_moves() {
        for format in [
            "rgb24", "bgr24", "rgba", "bgra", "gray8", "yuyv", "nv12", "i420",
        ] {
            let format: PixelFormat = format.parse().unwrap();
            let meta = FrameMeta::new(64, 48, format);
            let len = format.frame_len(64, 48).unwrap();
            let (mut a, mut b) = (vec![0u8; len], vec![0u8; len]);
            draw(&mut a, &meta, 0);
            draw(&mut b, &meta, 1);
            assert_ne!(a, b, "{format} does not move");
            assert!(a.iter().any(|&v| v != 0), "{format} is blank");
        }
    }

    #[test]
    fn frame_rates_are_checked_the_same_way_everywhere() {
        assert_eq!(frame_period(None), Ok(None));
        assert_eq!(frame_period(Some(0.0)), Ok(None));
        assert_eq!(
            frame_period(Some(4.0)),
            Ok(Some(Duration::from_millis(250)))
        );
        for bad in [-5.0, f64::NAN, f64::INFINITY, 1e-300, -0.0001] {
            assert!(frame_period(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn bounce_stays_in_range() {
        for t in 0..1000 {
            assert!(bounce(t, 37) <= 37);
        }
        assert_eq!(bounce(5, 0), 0);
    }
}
