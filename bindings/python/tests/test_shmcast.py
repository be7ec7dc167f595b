"""Tests of the Python binding, with real processes where it matters.

bindings/python/test runs them (it builds the extension into a virtual
environment first). SHMCAST_BIN names the `shmcast` command.
"""

import gc
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import shmcast

SHMCAST = os.environ.get("SHMCAST_BIN", "shmcast")
counter = iter(range(1_000_000))


def unique(what: str) -> str:
    return f"py-{what}-{os.getpid()}-{next(counter)}"


def ffmpeg_testsrc(n: int) -> list[str]:
    return ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=30", "-frames:v", str(n)]


@pytest.fixture(scope="module")
def reference():
    """ffmpeg's own framemd5 of 60 testsrc frames, rgb24."""
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg is needed; scripts/test installs it")
    out = subprocess.run(
        ffmpeg_testsrc(60) + ["-pix_fmt", "rgb24", "-f", "framemd5", "-"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [line.rsplit(",", 1)[1].strip() for line in out.splitlines() if not line.startswith("#")]


def publish_testsrc(name: str, frames: int) -> subprocess.Popen:
    """`ffmpeg testsrc | shmcast publish NAME` in the background."""
    command = " ".join(ffmpeg_testsrc(frames)) + f" -f rawvideo -pix_fmt rgb24 - | '{SHMCAST}' publish {name} --width 320 --height 240 --format rgb24 --fps 30"
    return subprocess.Popen(["sh", "-c", command], stderr=subprocess.DEVNULL)


@pytest.mark.parametrize("how", ["copy", "copy-into", "lease"])
def test_frames_from_ffmpeg_through_shmcast_publish_match_ffmpegs_framemd5(reference, how):
    name = unique("ffmpeg")
    producer = publish_testsrc(name, len(reference))
    try:
        sub = shmcast.Subscriber(name, timeout=30, leasing=(how == "lease"))
        out = np.empty(sub.max_frame_len, np.uint8)
        seen, checked = 0, 0
        while seen < len(reference):
            try:
                sub.wait(after=seen, timeout=5)
            except shmcast.Timeout:
                break
            if how == "copy":
                info, data = sub.read_latest()
                md5 = hashlib.md5(data).hexdigest()
            elif how == "copy-into":
                info = sub.read_latest(out)
                md5 = hashlib.md5(out[: info.len]).hexdigest()
            else:
                with sub.lease_latest() as lease:
                    info = lease.info
                    frame = np.frombuffer(lease, np.uint8).reshape(info.height, info.width, 3)
                    md5 = hashlib.md5(frame).hexdigest()
                    del frame
            assert (info.width, info.height, info.format) == (320, 240, "rgb24")
            assert info.number > seen
            assert md5 == reference[info.number - 1], f"frame {info.number}"
            seen = info.number
            checked += 1
        assert seen == len(reference), f"the last frame seen was {seen}"
        assert checked >= len(reference) // 2, f"only {checked} frames checked"
    finally:
        assert producer.wait(timeout=30) == 0


def test_a_lease_backed_array_is_the_channels_memory_not_a_copy():
    name = unique("shares")
    with shmcast.Publisher(name, 64) as pub, shmcast.Subscriber(name, leasing=True) as sub:
        pub.publish(bytes(range(64)))
        lease = sub.lease_latest()
        a = np.frombuffer(lease, np.uint8)
        b = np.frombuffer(memoryview(lease), np.uint8)
        assert a.ctypes.data == lease.address
        assert np.shares_memory(a, b)
        # The array's memory is the channel's shared mapping itself.
        maps = open("/proc/self/maps").read().splitlines()
        owner = [m for m in maps if int(m.split()[0].split("-")[0], 16) <= a.ctypes.data < int(m.split()[0].split("-")[1], 16)]
        assert owner and owner[0].endswith(f"/dev/shm/shmcast.{name}"), owner
        assert not a.flags.writeable
        info, copy = sub.read_latest()
        assert not np.shares_memory(a, np.frombuffer(copy, np.uint8))
        assert a.tolist() == list(range(64))
        with pytest.raises(ValueError):
            a[0] = 1  # read-only: it is the publisher's memory
        del a, b
        lease.release()


def test_release_with_a_live_view_raises_buffererror_and_views_keep_the_slot():
    name = unique("views")
    # Two slots and a long max lease: while frame 1 is leased and frame 2 is
    # the latest, the publisher has no free slot.
    with shmcast.Publisher(name, 16, slots=2, max_lease=60) as pub, shmcast.Subscriber(name, leasing=True) as sub:
        pub.publish(b"1" * 16)
        lease = sub.lease_latest()
        arr = np.frombuffer(lease, np.uint8)
        with pytest.raises(BufferError, match="view"):
            lease.release()
        assert not lease.released
        pub.publish(b"2" * 16)
        with pytest.raises(shmcast.AllSlotsLeased):
            pub.publish(b"3" * 16)
        # Our name for the lease goes; the array still holds it.
        del lease
        gc.collect()
        with pytest.raises(shmcast.AllSlotsLeased):
            pub.publish(b"3" * 16)
        assert bytes(arr) == b"1" * 16
        # The last view goes: the slot is free again.
        del arr
        gc.collect()
        assert pub.publish(b"3" * 16) == 3


def test_a_revoked_lease_says_so():
    name = unique("revoked")
    with shmcast.Publisher(name, 8, slots=2, max_lease=0.02) as pub, shmcast.Subscriber(name, leasing=True) as sub:
        pub.publish(b"a" * 8)
        lease = sub.lease_latest()
        pub.publish(b"b" * 8)
        deadline = time.monotonic() + 10
        while True:
            try:
                pub.publish(b"c" * 8)
                break
            except shmcast.AllSlotsLeased:
                assert time.monotonic() < deadline
                time.sleep(0.005)
        assert not lease.intact
        with pytest.raises(shmcast.Revoked, match="revoked"):
            lease.release()


def test_wait_releases_the_gil_and_uses_no_cpu():
    name = unique("gil")
    with shmcast.Publisher(name, 8), shmcast.Subscriber(name) as sub:
        # Another Python thread keeps running while we wait.
        count = 0
        stop = threading.Event()

        def spin():
            nonlocal count
            while not stop.is_set():
                count += 1

        t = threading.Thread(target=spin)
        t.start()
        with pytest.raises(shmcast.Timeout):
            sub.wait(after=0, timeout=0.5)
        stop.set()
        t.join()
        assert count > 10_000, f"the other thread ran only {count} times"
        # Alone, a 1 s wait costs (almost) no CPU.
        cpu = time.process_time()
        started = time.monotonic()
        with pytest.raises(shmcast.Timeout):
            sub.wait(after=0, timeout=1.0)
        assert time.monotonic() - started >= 0.95
        used = time.process_time() - cpu
        assert used < 0.1, f"a 1 s wait used {used:.3f} s of CPU"


def test_a_python_publisher_is_read_by_the_rust_cli():
    name = unique("to-rust")

    def frame(number: int) -> np.ndarray:
        return ((np.arange(64 * 48) + number * 7) % 256).astype(np.uint8)

    with shmcast.Publisher(name, 64 * 48) as pub:
        reader = subprocess.Popen(
            [SHMCAST, "read", name, "--count", "10", "--md5", "--timeout", "10"],
            stdout=subprocess.PIPE,
            text=True,
        )
        # Publish, 20 frames a second, until the reader has seen ten new
        # ones (it counts from when it attached).
        deadline = time.monotonic() + 20
        number = 0
        while reader.poll() is None and time.monotonic() < deadline:
            number += 1
            loan = pub.loan(64 * 48)
            np.frombuffer(loan, np.uint8)[:] = frame(number)
            assert loan.commit(width=64, height=48, format="gray8") == number
            time.sleep(0.05)
        out, _ = reader.communicate(timeout=10)
    assert reader.returncode == 0
    lines = [line.split() for line in out.splitlines()]
    assert len(lines) == 10
    for number, size, fmt, md5 in lines:
        assert (size, fmt) == ("64x48", "gray8")
        assert md5 == hashlib.md5(frame(int(number))).hexdigest()


def test_errors_are_their_own_exceptions_with_the_librarys_message():
    missing = unique("missing")
    with pytest.raises(shmcast.NotFound, match=missing):
        shmcast.Subscriber(missing)
    with pytest.raises(shmcast.Timeout, match=missing):
        shmcast.Subscriber(missing, timeout=0.05)
    with pytest.raises(shmcast.InvalidName):
        shmcast.Subscriber("bad/name")
    name = unique("errors")
    with shmcast.Publisher(name, 8) as pub:
        with pytest.raises(shmcast.WriterAlive, match=str(os.getpid())):
            shmcast.Publisher(name, 8)
        with pytest.raises(shmcast.TooLarge):
            pub.publish(b"x" * 9)
        with pytest.raises(ValueError, match="pixel format"):
            pub.publish(b"x" * 8, format="rgb48")
        with shmcast.Subscriber(name) as sub:
            with pytest.raises(shmcast.NotLeasing, match="leasing=True"):
                sub.lease_latest()
            assert sub.read_latest() is None
            pub.publish(b"x" * 8)
            with pytest.raises(shmcast.BufferTooSmall):
                sub.read_latest(bytearray(4))
            with pytest.raises(shmcast.Timeout):
                sub.wait(after=1, timeout=0.01)
            with pytest.raises(ValueError):
                sub.wait(after=1, timeout=-1)
            assert issubclass(shmcast.NotFound, shmcast.Error)
    with pytest.raises(ValueError, match="closed"):
        sub.read_latest()
    with pytest.raises(ValueError, match="closed"):
        pub.publish(b"x")


def test_loans_fill_in_place_and_refuse_to_commit_with_live_views():
    name = unique("loan")
    with shmcast.Publisher(name, 16) as pub, shmcast.Subscriber(name) as sub:
        loan = pub.loan(16)
        view = np.frombuffer(loan, np.uint8)
        view[:] = 9
        with pytest.raises(BufferError):
            loan.commit()
        with pytest.raises(shmcast.Error, match="loan"):
            pub.publish(b"x")
        del view
        assert loan.commit(width=4, height=4, format="gray8") == 1
        with pytest.raises(shmcast.Error, match="already"):
            loan.commit()
        info, data = sub.read_latest()
        assert (info.format, data) == ("gray8", b"\x09" * 16)
        # A with block abandons what it does not commit: the publisher
        # publishes again, and the abandoned bytes were never published.
        with pub.loan(16) as unused:
            np.frombuffer(unused, np.uint8)[:] = 1
        assert sub.latest_number == 1
        assert pub.publish(b"2" * 16) == 2
        # So does a loan left to the garbage collector, or one whose with
        # block an exception leaves while a view is still alive.
        pub.loan(16)
        gc.collect()
        assert pub.publish(b"3" * 16) == 3
        with pytest.raises(RuntimeError, match="capture failed"):
            with pub.loan(16) as failing:
                kept = np.frombuffer(failing, np.uint8)
                raise RuntimeError("capture failed")
        del kept, failing
        gc.collect()
        assert pub.publish(b"4" * 16) == 4
        assert sub.health() == "live"
    assert sub.closed


def test_regions_round_trip_and_read_only_views_refuse_writes():
    name = unique("region")
    with shmcast.Region(name, size=64) as owner, shmcast.Region(name, read_only=True) as view:
        owner.write(b"hello", 10)
        assert view.read(10, 5) == b"hello"
        assert view.size == 64 and len(view.read()) == 64
        with pytest.raises(shmcast.Error, match="read-only"):
            view.write(b"x", 0)
        with pytest.raises(ValueError):
            owner.read(60, 8)


def test_wait_gives_way_to_ctrl_c():
    import signal

    name = unique("sigint")
    # Python's own Ctrl-C handler, whatever this process inherited: a shell
    # that starts the tests in the background leaves SIGINT ignored, and
    # then there is no KeyboardInterrupt to see.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with shmcast.Publisher(name, 8), shmcast.Subscriber(name) as sub:
            timer = threading.Timer(0.3, lambda: signal.pthread_kill(threading.main_thread().ident, signal.SIGINT))
            timer.start()
            started = time.monotonic()
            with pytest.raises(KeyboardInterrupt):
                sub.wait(after=0, timeout=30)
            assert time.monotonic() - started < 5
            timer.join()
    finally:
        signal.signal(signal.SIGINT, previous)


def test_one_thread_waits_while_another_leases():
    name = unique("two-threads")
    with shmcast.Publisher(name, 8) as pub, shmcast.Subscriber(name, leasing=True) as sub:
        pub.publish(b"1" * 8)
        woke = []
        waiter = threading.Thread(target=lambda: woke.append(sub.wait(after=1, timeout=10)))
        waiter.start()
        time.sleep(0.2)
        with sub.lease_latest() as lease:  # not blocked by the waiting thread
            assert bytes(lease) == b"1" * 8
        pub.publish(b"2" * 8)
        waiter.join(timeout=10)
        assert woke == [2]


def test_a_forked_child_leaves_the_parents_channel_alone():
    name = unique("fork")
    with shmcast.Publisher(name, 8, slots=2, max_lease=60) as pub, shmcast.Subscriber(name, leasing=True) as sub:
        pub.publish(b"1" * 8)
        lease = sub.lease_latest()
        pid = os.fork()
        if pid == 0:
            # The child closes and drops everything it inherited, as a
            # careless program's exit would, and must not touch the parent's.
            try:
                pub.close()
                sub.close()
                lease.release()
                gc.collect()
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert status == 0
        # The name, the publisher role and the lease are still the parent's.
        assert sub.health() == "live"
        with shmcast.Subscriber(name) as again:
            assert again.latest_number == 1
        pub.publish(b"2" * 8)
        with pytest.raises(shmcast.AllSlotsLeased):
            pub.publish(b"3" * 8)  # the lease still holds its slot
        lease.release()
        assert pub.publish(b"3" * 8) == 3


def test_a_channel_made_in_a_forked_child_lives_as_long_as_the_child():
    # The sequence that once let a new publisher take over a live channel:
    # a parent uses the library, forks, the child publishes on a channel of
    # its own, the parent exits. The child's channel is the child's.
    first, second = unique("forkid-a"), unique("forkid-b")
    script = f"""
import os, time, shmcast
shmcast.Publisher({first!r}, 8).close()
if os.fork() == 0:
    pub = shmcast.Publisher({second!r}, 8)
    pub.publish(b"1" * 8)
    print(os.getpid(), flush=True)
    time.sleep(60)
    os._exit(0)
"""
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    try:
        assert parent.wait(timeout=10) == 0
        with pytest.raises(shmcast.WriterAlive):
            shmcast.Publisher(second, 8)
        with shmcast.Subscriber(second) as sub:
            assert sub.health() == "live" and sub.latest_number == 1
    finally:
        os.kill(child, signal.SIGKILL)
        parent.stdout.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="truncates /dev/shm")
def test_a_truncation_is_reported_by_wait_health_and_the_next_publish():
    name = unique("trunc")
    with shmcast.Publisher(name, 65536) as pub, shmcast.Subscriber(name) as sub:
        pub.publish(b"1" * 64)
        outcome = {}

        def wait():
            try:
                sub.wait(after=1, timeout=20)
                outcome["wait"] = "returned"
            except shmcast.Truncated as e:
                outcome["wait"] = str(e)

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.1)
        os.truncate(f"/dev/shm/shmcast.{name}", 0)
        started = time.monotonic()
        waiter.join(15)
        assert not waiter.is_alive() and time.monotonic() - started < 10, "the wait slept on"
        assert "truncated" in outcome["wait"] and name in outcome["wait"], outcome
        assert sub.health() == "truncated"
        with pytest.raises(shmcast.Truncated):
            pub.publish(b"2" * 64)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="truncates /dev/shm")
def test_faulthandler_enabled_first_leaves_a_truncation_an_error():
    # The safe order the README gives: Python's fault handler first, then
    # channels (shmcast's SIGBUS guard passes on what is not its own). A
    # truncation is then an exception, not "Fatal Python error: Bus error".
    name = unique("fh")
    script = f"""
import faulthandler, os, shmcast
faulthandler.enable()
with shmcast.Publisher({name!r}, 65536) as pub, shmcast.Subscriber({name!r}) as sub:
    pub.publish(b"1" * 64)
    os.truncate("/dev/shm/shmcast.{name}", 0)
    try:
        sub.read_latest()
    except shmcast.Truncated:
        print("truncated")
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "truncated", out


def test_any_contiguous_buffer_goes_in_and_out_whatever_its_item_type():
    name = unique("dtypes")
    depth = (np.arange(32, dtype=np.uint16) * 1000).reshape(4, 8)
    with shmcast.Publisher(name, depth.nbytes) as pub, shmcast.Subscriber(name) as sub:
        pub.publish(depth, width=8, height=4)
        out = np.empty((4, 8), np.uint16)
        info = sub.read_latest(out)
        assert info.len == depth.nbytes and (out == depth).all()
        with pytest.raises((BufferError, ValueError)):
            pub.publish(depth[:, ::2])  # not contiguous
        with pytest.raises((BufferError, ValueError, TypeError)):
            sub.read_latest(bytes(64))  # read-only


def test_a_region_read_past_its_end_is_refused_before_anything_is_allocated():
    name = unique("region-huge")
    with shmcast.Region(name, size=64) as region:
        with pytest.raises(ValueError, match="do not fit"):
            region.read(0, 2**45)
        with pytest.raises(ValueError, match="do not fit"):
            region.read(2**62, 2**62)


# ---- Reader, array(), to_rgb() -------------------------------------------------

# (format, width, height, stride, the array's shape)
LAYOUTS = [
    ("rgb24", 5, 3, 20, (3, 5, 3)),
    ("bgr24", 4, 2, 12, (2, 4, 3)),
    ("rgba", 3, 2, 16, (2, 3, 4)),
    ("bgra", 2, 2, 8, (2, 2, 4)),
    ("gray8", 7, 3, 9, (3, 7)),
    ("yuyv", 4, 2, 12, (2, 4, 2)),
    ("nv12", 4, 4, 6, (6, 4)),
    ("i420", 4, 4, 4, (6, 4)),
    ("i420", 4, 4, 8, (6, 4)),  # padded: a packed copy
]


def expected_array(data: bytes, fmt: str, w: int, h: int, s: int) -> np.ndarray:
    """What array() must show, built row by row from the frame's bytes."""
    raw = np.frombuffer(data, np.uint8)
    if fmt == "i420":
        y = [raw[r * s : r * s + w] for r in range(h)]
        cs, base = s // 2, s * h
        u = [raw[base + r * cs : base + r * cs + w // 2] for r in range(h // 2)]
        v = [raw[base + cs * h // 2 + r * cs : base + cs * h // 2 + r * cs + w // 2] for r in range(h // 2)]
        return np.concatenate([np.concatenate(y), np.concatenate(u), np.concatenate(v)]).reshape(h * 3 // 2, w)
    channels = {"rgb24": 3, "bgr24": 3, "rgba": 4, "bgra": 4, "gray8": 1, "yuyv": 2, "nv12": 1}[fmt]
    rows = h * 3 // 2 if fmt == "nv12" else h
    out = np.stack([raw[r * s : r * s + w * channels] for r in range(rows)])
    return out.reshape(rows, w) if channels == 1 else out.reshape(rows, w, channels)


@pytest.mark.parametrize("fmt,w,h,s,shape", LAYOUTS)
@pytest.mark.parametrize("how", ["lease", "copy"])
def test_array_is_shaped_for_its_format_with_the_stride_honoured(fmt, w, h, s, shape, how):
    name = unique("array")
    rows = h * 3 // 2 if fmt in ("nv12", "i420") else h
    data = bytes((i * 7 + 3) % 251 for i in range(s * rows))
    with shmcast.Publisher(name, len(data)) as publisher:
        publisher.publish(data, width=w, height=h, format=fmt, stride=s)
        reader = shmcast.Reader(name, access=how)
        frame = reader.next(timeout=5)
        assert frame is not None and reader.leases == (how == "lease")
        image = frame.array()
        assert image.shape == shape and image.dtype == np.uint8
        assert np.array_equal(image, expected_array(data, fmt, w, h, s))
        if how == "lease" and not (fmt == "i420" and s != w):
            assert image.base is not None  # a view of the frame, not a copy
            with pytest.raises(BufferError):
                frame.release()
        del image
        rgb = frame.to_rgb()
        assert rgb.shape == (h, w, 3)
        if fmt == "rgb24":
            assert np.array_equal(rgb, expected_array(data, fmt, w, h, s))
        if fmt == "bgr24":
            assert np.array_equal(rgb, expected_array(data, fmt, w, h, s)[:, :, ::-1])
        if fmt == "gray8":
            assert np.array_equal(rgb[:, :, 1], expected_array(data, fmt, w, h, s))
        frame.release()


@pytest.mark.parametrize(
    "fmt,w,h,s,size",
    [
        ("rgb24", 4, 4, 1000, 100),  # the stride runs past the bytes
        ("rgb24", 64, 64, 0, 100),  # the rows do
        ("rgb24", 4, 4, 2, 100),  # a stride shorter than a row
        ("gray8", 0, 0, 0, 10),  # no pixels
        ("nv12", 3, 4, 0, 100),  # an odd width for 4:2:0
        ("i420", 4, 4, 8, 40),  # padded planes past the end
        ("gray8", 2**31, 2**31, 2**32 - 1, 10),  # sizes that overflow
        ("raw", 0, 0, 0, 10),  # no pixel layout at all
    ],
)
def test_metadata_that_lies_about_geometry_is_an_error_never_a_bad_read(fmt, w, h, s, size):
    name = unique("lies")
    with shmcast.Publisher(name, 1 << 16) as publisher:
        publisher.publish(bytes(size), width=w, height=h, format=fmt, stride=s)
        frame = shmcast.Reader(name).next(timeout=5)
        with pytest.raises(shmcast.Error, match="frame 1"):
            frame.array()
        with pytest.raises(shmcast.Error, match="frame 1"):
            frame.to_rgb()
        frame.release()


def test_a_reader_waits_for_a_channel_and_reports_health():
    name = unique("reader")
    reader = shmcast.Reader(name)
    assert reader.next(timeout=0.3) is None and reader.health == "missing"
    with shmcast.Publisher(name, 16) as publisher:
        publisher.publish(b"x" * 16)
        frames = reader.frames(timeout=5)
        frame = next(frames)
        assert frame is not None and bytes(frame) == b"x" * 16 and reader.health == "live"
        publisher.publish(b"y" * 16)
        frame = next(frames)  # the loop released the frame before
        assert bytes(frame) == b"y" * 16
    frame = next(frames)  # the publisher is gone: nothing comes, not an end
    assert frame is None and reader.health == "gone"


@pytest.mark.parametrize("access", ["auto", "lease", "copy"])
def test_metadata_comes_with_its_frame_by_publish_and_by_loan(access):
    name = unique("meta")
    with shmcast.Publisher(name, 16, max_metadata=64) as publisher:
        reader = shmcast.Reader(name, access=access)
        publisher.publish(b"a" * 16, metadata=b'{"exposure_us": 8000}')
        with reader.next(timeout=5) as frame:
            assert bytes(frame) == b"a" * 16
            assert frame.metadata == b'{"exposure_us": 8000}'
            assert frame.info.metadata_len == 21
        with publisher.loan(16) as loan:
            np.frombuffer(loan, np.uint8)[:] = ord("b")
            loan.commit(metadata=bytearray(b"trigger=7"))
        with reader.next(timeout=5) as frame:
            assert (bytes(frame), frame.metadata) == (b"b" * 16, b"trigger=7")
        # A frame without metadata has none; numpy arrays go in as bytes.
        publisher.publish(b"c" * 16)
        with reader.next(timeout=5) as frame:
            assert frame.metadata == b""
        publisher.publish(b"d" * 16, metadata=np.arange(4, dtype=np.uint8))
        with reader.next(timeout=5) as frame:
            assert frame.metadata == bytes([0, 1, 2, 3])
            assert frame.info.metadata == bytes([0, 1, 2, 3])


@pytest.mark.parametrize("leasing", [False, True])
def test_read_latest_copies_the_metadata_with_the_frame(leasing):
    name = unique("meta-read")
    with shmcast.Publisher(name, 16, max_metadata=64) as publisher:
        sub = shmcast.Subscriber(name, leasing=leasing)
        publisher.publish(b"e" * 16, metadata=b"gain=3")
        info, data = sub.read_latest()
        assert (data, info.metadata, info.metadata_len) == (b"e" * 16, b"gain=3", 6)
        out = bytearray(16)
        publisher.publish(b"f" * 16)
        info = sub.read_latest(out)
        assert (bytes(out), info.metadata, info.metadata_len) == (b"f" * 16, b"", 0)
        if leasing:
            publisher.publish(b"g" * 16, metadata=b"id=9")
            lease = sub.lease_latest()
            assert lease.metadata == lease.info.metadata == b"id=9"
            lease.release()


def test_metadata_longer_than_the_channel_allows_raises_at_publish_and_commit():
    name = unique("meta-long")
    with shmcast.Publisher(name, 16, max_metadata=4) as publisher:
        with pytest.raises(shmcast.TooLarge, match="5 bytes of metadata"):
            publisher.publish(b"x" * 16, metadata=b"12345")
        loan = publisher.loan(16)
        with pytest.raises(shmcast.TooLarge, match="at most 4"):
            loan.commit(metadata=b"12345")
        # The loan is still out, and commits with metadata that fits.
        assert loan.commit(metadata=b"1234") == 1
    with pytest.raises(ValueError, match="metadata"):
        shmcast.Publisher(unique("meta-huge"), 16, max_metadata=65537)
