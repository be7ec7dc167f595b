//! Instructions per transport operation, counted by callgrind: the same
//! work on every machine whatever its cores, caches or load, so these
//! figures hold in every placement.
//!
//! One process plays both sides, one step at a time, with 64-byte frames:
//! the payload is one 64-byte store on each transport, so what is counted
//! is the transport. Two operations, each an `#[inline(never)]` function
//! that callgrind collects alone (`--toggle-collect`):
//! - publish: shmcast `loan` + `commit` (slot claim, metadata, `latest`,
//!   generation, futex wake); iceoryx2 `loan_slice_uninit` + `send` +
//!   `notify` (the event a blocked reader waits on, as in the frame cases).
//! - read: shmcast `wait_newer` + `lease_latest` + release; iceoryx2
//!   `timed_wait` on the event + `receive` of the newest sample + its drop.
//!   A frame is always waiting, so neither sleeps: the count is the
//!   user-space path, the system calls are counted apart (`strace -c`).
//!
//! Each operation is run twice, with few and with many iterations, and the
//! difference is divided by the extra iterations, so start-up and first-touch
//! costs drop out.

use std::mem::MaybeUninit;
use std::process::Command;
use std::time::Duration;

use iceoryx2::prelude::*;
use serde_json::{json, Value};
use shmcast::{Access, FrameMeta, Publisher, Subscriber, SubscriberOptions};

type Error = Box<dyn std::error::Error>;

const FEW: u64 = 200;
const MANY: u64 = 1200;

#[inline(never)]
fn shmcast_publish_op(publisher: &mut Publisher, meta: &FrameMeta, n: u64) {
    let mut loan = publisher.loan(64).expect("a free slot");
    loan[..8].copy_from_slice(&n.to_ne_bytes());
    std::hint::black_box(loan.commit(meta));
}

#[inline(never)]
fn shmcast_read_op(subscriber: &mut Subscriber, last: u64) -> u64 {
    let newest = subscriber
        .wait_newer(last, Duration::from_millis(50))
        .expect("a frame is waiting");
    let lease = subscriber.lease_latest().expect("lease").expect("a frame");
    // SAFETY: one byte, read at once, far within the max lease while the
    // publisher has free slots: nothing writes it meanwhile.
    std::hint::black_box(unsafe { lease.bytes().as_slice() }.first().copied());
    drop(lease);
    newest
}

fn shmcast_run(op: &str, iterations: u64) -> Result<(), Error> {
    let name = format!("bench-instr-{}", std::process::id());
    let mut publisher = Publisher::create(&name, 64)?;
    let options = SubscriberOptions::new().access(Access::Leasing);
    let mut subscriber = Subscriber::open_with(&name, &options)?;
    let meta = FrameMeta::raw();
    let mut last = 0;
    for n in 1..=iterations {
        if op == "publish" {
            shmcast_publish_op(&mut publisher, &meta, n);
        } else {
            // Published outside the counted function.
            let mut loan = publisher.loan(64)?;
            loan[..8].copy_from_slice(&n.to_ne_bytes());
            loan.commit(&meta);
        }
        last = shmcast_read_op(&mut subscriber, last);
    }
    Ok(())
}

type IcePublisher = iceoryx2::port::publisher::Publisher<ipc::Service, [u8], ()>;
type IceSubscriber = iceoryx2::port::subscriber::Subscriber<ipc::Service, [u8], ()>;
type IceNotifier = iceoryx2::port::notifier::Notifier<ipc::Service>;
type IceListener = iceoryx2::port::listener::Listener<ipc::Service>;

#[inline(never)]
fn iceoryx2_publish_op(publisher: &IcePublisher, notifier: &IceNotifier, n: u64) {
    let mut sample = publisher.loan_slice_uninit(64).expect("a sample");
    let payload: &mut [MaybeUninit<u8>] = sample.payload_mut();
    for (i, b) in n.to_ne_bytes().iter().enumerate() {
        payload[i].write(*b);
    }
    // 64 bytes, as the shmcast slot has: zero the rest (the payload).
    for b in &mut payload[8..] {
        b.write(0);
    }
    // SAFETY: all 64 bytes were written just above.
    let sample = unsafe { sample.assume_init() };
    sample.send().expect("send");
    notifier.notify().expect("notify");
}

#[inline(never)]
fn iceoryx2_read_op(listener: &IceListener, subscriber: &IceSubscriber) {
    listener
        .timed_wait(|_| {}, Duration::from_millis(50))
        .expect("wait");
    let mut newest = None;
    while let Some(sample) = subscriber.receive().expect("receive") {
        newest = Some(sample);
    }
    let sample = newest.expect("a sample is waiting");
    std::hint::black_box(sample.payload()[0]);
}

fn iceoryx2_run(op: &str, iterations: u64) -> Result<(), Error> {
    let name = format!("shmcast-bench/instr-{}", std::process::id());
    let node = NodeBuilder::new().create::<ipc::Service>()?;
    // Configured as in the frame cases: 2 buffered samples, safe overflow.
    let service = crate::ice::service(&node, &name, 1, 2)?;
    let events = node
        .service_builder(&name.as_str().try_into()?)
        .event()
        .open_or_create()?;
    let notifier = events.notifier_builder().create()?;
    let listener = events.listener_builder().create()?;
    let publisher = service
        .publisher_builder()
        .initial_max_slice_len(64)
        .allocation_strategy(AllocationStrategy::Static)
        .max_loaned_samples(1)
        .create()?;
    let subscriber = service.subscriber_builder().create()?;
    for n in 1..=iterations {
        if op == "publish" {
            iceoryx2_publish_op(&publisher, &notifier, n);
        } else {
            let sample = publisher.loan_slice_uninit(64)?.write_from_fn(|_| n as u8);
            sample.send()?;
            notifier.notify()?;
        }
        iceoryx2_read_op(&listener, &subscriber);
    }
    Ok(())
}

/// The role: `instr shmcast|iceoryx2 publish|read ITERATIONS`.
pub fn run(args: &[String]) {
    let iterations: u64 = args[2].parse().expect("iterations");
    let outcome = match args[0].as_str() {
        "shmcast" => shmcast_run(&args[1], iterations),
        "iceoryx2" => iceoryx2_run(&args[1], iterations),
        other => panic!("unknown transport {other}"),
    };
    if let Err(e) = outcome {
        panic!("instr {args:?}: {e}");
    }
}

/// Instructions callgrind counts inside `function` over `iterations`.
fn count(transport: &str, op: &str, iterations: u64) -> Result<u64, String> {
    let function = format!("*{transport}_{op}_op*");
    let out = std::env::temp_dir().join(format!(
        "shmcast-callgrind-{}-{transport}-{op}-{iterations}",
        std::process::id()
    ));
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let run = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(format!("--toggle-collect={function}"))
        .arg("--quiet")
        .arg(&exe)
        .args(["role", "instr", transport, op, &iterations.to_string()])
        .output()
        .map_err(|e| format!("cannot run valgrind: {e} (apt install valgrind)"))?;
    if !run.status.success() {
        let said = String::from_utf8_lossy(&run.stderr);
        let tail: Vec<&str> = said.lines().rev().take(12).collect();
        return Err(format!(
            "valgrind {transport} {op}: {}\n{}",
            run.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    let text = std::fs::read_to_string(&out).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&out);
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no instruction total in callgrind's output for {function}"))
}

/// Instructions per operation: (many - few) / (MANY - FEW).
fn per_op(transport: &str, op: &str, smoke: bool) -> Result<f64, String> {
    let (few, many) = if smoke { (20, 120) } else { (FEW, MANY) };
    let a = count(transport, op, few)?;
    let b = count(transport, op, many)?;
    Ok(b.saturating_sub(a) as f64 / (many - few) as f64)
}

/// Counts and prints the table; returns it as JSON.
pub fn report(smoke: bool) -> Value {
    println!();
    println!(
        "{:<28} {:>12} {:>12} {:>8}   (instructions per operation, callgrind, 64-byte frames)",
        "operation", "shmcast", "iceoryx2", "ratio"
    );
    let mut rows = Vec::new();
    for (op, what) in [
        ("publish", "publish (claim+commit+wake)"),
        ("read", "wait+lease+release"),
    ] {
        let shm = per_op("shmcast", op, smoke);
        let ice = per_op("iceoryx2", op, smoke);
        match (&shm, &ice) {
            (Ok(s), Ok(i)) => {
                println!("{what:<28} {s:>12.0} {i:>12.0} {:>8.2}", s / i);
                rows.push(json!({"operation": op, "shmcast": s, "iceoryx2": i, "ratio": s / i}));
            }
            _ => {
                let e = shm.err().or(ice.err()).unwrap_or_default();
                println!("{what:<28} not counted: {e}");
            }
        }
    }
    json!(rows)
}
