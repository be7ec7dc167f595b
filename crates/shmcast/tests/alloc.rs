//! The publish path allocates nothing: not a frame, not a dropped frame's
//! error. A publisher at 30 frames a second whose readers hold every slot
//! would otherwise allocate a message 30 times a second for as long as
//! they do. Counted by a global allocator that tallies this thread's
//! allocations (its own test binary, so that no other test shares it).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use shmcast::{Access, ErrorKind, FrameMeta, Publisher, Subscriber, SubscriberOptions};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// count is a thread-local Cell, which needs no allocation once initialised
// (const-initialised above).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `alloc`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: as for `alloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_in(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn publishing_and_its_errors_allocate_nothing() {
    let name = format!("t-alloc-{}", std::process::id());
    let options = shmcast::ChannelOptions::new(64).slots(2);
    let mut publisher = Publisher::create_with(&name, &options).unwrap();
    let meta = FrameMeta::raw();
    publisher.publish(&meta, &[1; 64]).unwrap();
    // The counter counts.
    assert_eq!(
        allocations_in(|| drop(std::hint::black_box(vec![0u8; 10]))),
        1
    );
    let leasing = SubscriberOptions::new().access(Access::Leasing);
    let mut sub = Subscriber::open_with(&name, &leasing).unwrap();

    // Frames, copied in and loaned.
    let frames = allocations_in(|| {
        for _ in 0..100 {
            publisher.publish(&meta, &[2; 64]).unwrap();
            let mut loan = publisher.loan(64).unwrap();
            loan.fill(3);
            loan.commit(&meta);
        }
    });
    assert_eq!(frames, 0, "publishing allocated");

    // Two slots, one leased: every other frame is dropped, with an error.
    let lease = sub.lease_latest().unwrap().unwrap();
    publisher.publish(&meta, &[4; 64]).unwrap();
    let mut errors = Vec::with_capacity(200);
    let dropped = allocations_in(|| {
        for _ in 0..100 {
            errors.push(publisher.publish(&meta, &[5; 64]).unwrap_err());
            errors.push(publisher.publish(&meta, &[6; 65]).unwrap_err());
        }
    });
    assert_eq!(dropped, 0, "a dropped frame's error allocated");
    assert_eq!(errors[0].kind(), ErrorKind::AllSlotsLeased);
    assert_eq!(errors[0].pid(), Some(std::process::id()));
    assert_eq!(errors[1].kind(), ErrorKind::TooLarge);
    // The message is written when it is shown, and says it all.
    assert!(errors[0].to_string().contains(&name), "{}", errors[0]);
    drop(lease);
}
