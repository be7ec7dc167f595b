//! The iceoryx2 side of the comparison: publish-subscribe of byte slices,
//! the writer filling each sample in place, readers blocking on an event
//! and then using the newest sample in place or copying it out; and a
//! 64-byte busy-polling round trip. Configured as close to shmcast's
//! channel as iceoryx2 allows: safe overflow (the writer never waits), a
//! buffer of 2 per subscriber, no history, one loan at a time.

use std::mem::MaybeUninit;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use iceoryx2::prelude::*;
use serde_json::json;

use crate::proc::{say, stop_flag, wait_go};
use crate::util::{cpu_time, fill, now_ns, stamped, touch, Latencies};
use crate::{pair, pubsub, s, unique, Case, Sample, FRAME};

type Error = Box<dyn std::error::Error>;

fn result(frames: u64, secs: f64, lat: &Latencies, shm: u64, run_cpu: f64) {
    say(&json!({"frames": frames, "secs": secs, "cpu": cpu_time().as_secs_f64(), "lat": lat.0, "shm": shm, "run_cpu": run_cpu}).to_string());
}

/// Bytes of iceoryx2's shared memory now in /dev/shm.
fn iceoryx2_shm() -> u64 {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("iox2_"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// A publish-subscribe service of byte slices: one publisher, safe
/// overflow (the writer never waits), no history.
pub(crate) fn service(
    node: &Node<ipc::Service>,
    name: &str,
    subscribers: usize,
    buffer: usize,
) -> Result<
    iceoryx2::service::port_factory::publish_subscribe::PortFactory<ipc::Service, [u8], ()>,
    Error,
> {
    Ok(node
        .service_builder(&name.try_into()?)
        .publish_subscribe::<[u8]>()
        .max_publishers(1)
        .max_subscribers(subscribers.max(1))
        .subscriber_max_buffer_size(buffer)
        .history_size(0)
        .subscriber_max_borrowed_samples(2)
        .enable_safe_overflow(true)
        .open_or_create()?)
}

fn writer(name: &str, size: usize, secs: f64, subscribers: usize) -> Result<(), Error> {
    let node = NodeBuilder::new().create::<ipc::Service>()?;
    let service = service(&node, name, subscribers, 2)?;
    let events = node
        .service_builder(&name.try_into()?)
        .event()
        .open_or_create()?;
    let notifier = events.notifier_builder().create()?;
    let publisher = service
        .publisher_builder()
        .initial_max_slice_len(size)
        .allocation_strategy(AllocationStrategy::Static)
        .max_loaned_samples(1)
        .create()?;
    say("ready");
    wait_go();
    let started = Instant::now();
    let cpu0 = cpu_time();
    let mut frames = 0u64;
    while started.elapsed().as_secs_f64() < secs {
        frames += 1;
        let mut sample = publisher.loan_slice_uninit(size)?;
        let payload: &mut [MaybeUninit<u8>] = sample.payload_mut();
        // SAFETY: `payload` is `size` writable bytes of the loaned sample;
        // viewing MaybeUninit<u8> as u8 for writing is sound, and `fill`
        // writes every byte before `assume_init` below.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(payload.as_mut_ptr().cast::<u8>(), payload.len())
        };
        fill(bytes, frames);
        // SAFETY: every byte was written just above.
        unsafe { sample.assume_init() }.send()?;
        notifier.notify()?;
    }
    let secs = started.elapsed().as_secs_f64();
    result(
        frames,
        secs,
        &Latencies::default(),
        iceoryx2_shm(),
        (cpu_time() - cpu0).as_secs_f64(),
    );
    Ok(())
}

fn reader(name: &str, mode: &str, subscribers: usize) -> Result<(), Error> {
    let node = NodeBuilder::new().create::<ipc::Service>()?;
    let service = service(&node, name, subscribers, 2)?;
    let events = node
        .service_builder(&name.try_into()?)
        .event()
        .open_or_create()?;
    let listener = events.listener_builder().create()?;
    let subscriber = service.subscriber_builder().create()?;
    let stop = stop_flag();
    say("ready");
    let mut buf = Vec::new();
    let mut lat = Latencies::default();
    let (mut frames, mut first, mut last_at) = (0u64, None, Instant::now());
    while !stop.load(SeqCst) {
        listener.timed_wait(|_| {}, Duration::from_millis(50))?;
        // Latest wins, as in shmcast: use only the newest sample.
        let mut newest = None;
        while let Some(sample) = subscriber.receive()? {
            newest = Some(sample);
        }
        let Some(sample) = newest else {
            continue;
        };
        let sent = if mode == "lease" {
            touch(sample.payload());
            stamped(sample.payload())
        } else {
            buf.clear();
            buf.extend_from_slice(sample.payload());
            stamped(&buf)
        };
        lat.push(now_ns().saturating_sub(sent));
        frames += 1;
        first.get_or_insert_with(Instant::now);
        last_at = Instant::now();
    }
    let secs = first.map_or(0.0, |f| (last_at - f).as_secs_f64());
    result(frames.saturating_sub(1), secs, &lat, 0, 0.0);
    Ok(())
}

fn rtt_a(name: &str, secs: f64) -> Result<(), Error> {
    let node = NodeBuilder::new().create::<ipc::Service>()?;
    let ping = service(&node, &format!("{name}/ping"), 1, 1)?;
    let pong = service(&node, &format!("{name}/pong"), 1, 1)?;
    let tx = ping
        .publisher_builder()
        .initial_max_slice_len(64)
        .create()?;
    let rx = pong.subscriber_builder().create()?;
    say("ready");
    wait_go();
    let mut lat = Latencies::default();
    let started = Instant::now();
    let mut trips = 0;
    while started.elapsed().as_secs_f64() < secs {
        let t0 = now_ns();
        tx.loan_slice_uninit(64)?
            .write_from_fn(|j| j as u8)
            .send()?;
        loop {
            if rx.receive()?.is_some() {
                break;
            }
            std::hint::spin_loop();
        }
        lat.push(now_ns() - t0);
        trips += 1;
    }
    tx.loan_slice_uninit(64)?.write_from_fn(|_| 0xFF).send()?;
    result(trips, started.elapsed().as_secs_f64(), &lat, 0, 0.0);
    Ok(())
}

fn rtt_b(name: &str) -> Result<(), Error> {
    let node = NodeBuilder::new().create::<ipc::Service>()?;
    let ping = service(&node, &format!("{name}/ping"), 1, 1)?;
    let pong = service(&node, &format!("{name}/pong"), 1, 1)?;
    let rx = ping.subscriber_builder().create()?;
    let tx = pong
        .publisher_builder()
        .initial_max_slice_len(64)
        .create()?;
    say("ready");
    loop {
        match rx.receive()? {
            Some(s) if s.payload()[8] == 0xFF && s.payload()[0] == 0xFF => break,
            Some(s) => {
                tx.loan_slice_uninit(64)?
                    .write_from_slice(s.payload())
                    .send()?;
            }
            None => std::hint::spin_loop(),
        }
    }
    result(0, 0.0, &Latencies::default(), 0, 0.0);
    Ok(())
}

/// Runs an iceoryx2 role; `false` if `role` is not one.
pub fn run(role: &str, args: &[String]) {
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    let num = |i: usize| arg(i).parse::<usize>().expect("numeric role argument");
    let outcome = match role {
        "ice-writer" => writer(&arg(0), num(1), arg(2).parse().unwrap(), num(3)),
        "ice-reader" => reader(&arg(0), &arg(1), num(2)),
        "ice-rtt-a" => rtt_a(&arg(0), arg(1).parse().unwrap()),
        "ice-rtt-b" => rtt_b(&arg(0)),
        other => panic!("unknown role {other}"),
    };
    if let Err(e) = outcome {
        panic!("{role}: {e}");
    }
}

fn service_name() -> String {
    format!("shmcast-bench/{}", unique())
}

fn frames_case(size: usize, mode: &'static str, readers: usize, secs: f64) -> Sample {
    let name = service_name();
    let reader_args = {
        let name = name.clone();
        move |_: &str| vec![name.clone(), s(mode), s(readers)]
    };
    pubsub(
        ("ice-writer", vec![name, s(size), s(secs), s(readers)]),
        ("ice-reader", &reader_args),
        readers,
    )
}

/// The iceoryx2 cases of the main table.
pub fn cases(secs: f64) -> Vec<Case> {
    vec![
        (
            "iceoryx2 in place, 1 reader",
            Box::new(move || frames_case(FRAME, "lease", 1, secs)),
        ),
        (
            "iceoryx2 in place, 4 readers",
            Box::new(move || frames_case(FRAME, "lease", 4, secs)),
        ),
        (
            "iceoryx2 copy out, 1 reader",
            Box::new(move || frames_case(FRAME, "copy", 1, secs)),
        ),
        (
            "iceoryx2 copy out, 4 readers",
            Box::new(move || frames_case(FRAME, "copy", 4, secs)),
        ),
        (
            "iceoryx2 transport only, 64 B, 1 reader",
            Box::new(move || frames_case(64, "lease", 1, secs)),
        ),
        (
            "iceoryx2 64 B round trip",
            Box::new(move || {
                let name = service_name();
                pair(
                    ("ice-rtt-a", vec![name.clone(), s(secs)]),
                    ("ice-rtt-b", vec![name]),
                    true,
                )
            }),
        ),
    ]
}
