"""The benchmark's reader in Python (the shmcast wheel, numpy), the same
protocol as its Rust reader role (bench/src/roles.rs, shm_reader):

    python py_reader.py NAME lease|copy|lease-meta|copy-meta

prints "ready" once subscribed, reads frames until its stdin is closed
(waiting in Subscriber.wait between them; in place it reads one word per
cache line of each frame through numpy, as the Rust reader's `touch` reads
one byte), then prints one JSON line: frames, secs, cpu, and the latencies
from the writer's stamp in a frame's first 8 bytes (CLOCK_MONOTONIC ns)
to the read; the -meta modes take them from the frame's timestamp instead
(its publish time, on the wall clock), for frames nobody stamped.
"""

import json
import resource
import sys
import threading
import time

import numpy as np

import shmcast


def main() -> None:
    name, mode = sys.argv[1], sys.argv[2]
    meta = mode.endswith("-meta")
    sub = shmcast.Subscriber(name, timeout=30, leasing=True)
    stop = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    print("ready", flush=True)
    lat: list[int] = []
    frames, first, last_at, sink = 0, None, None, 0
    last = sub.latest_number
    while not stop.is_set():
        try:
            last = sub.wait(after=last, timeout=0.05)
        except shmcast.Timeout:
            continue
        if mode.startswith("lease"):
            lease = sub.lease_latest()
            if lease is None:
                continue
            frame = np.frombuffer(lease, np.uint8)
            # One 8-byte word of every 64-byte line: numpy's fastest way to
            # touch each cache line (a strided uint8 sum costs half again).
            whole = len(frame) // 8 * 8
            sink ^= int(frame[:whole].view(np.uint64)[::8].max())
            sent = lease.info.timestamp_ns if meta else int.from_bytes(frame[:8].tobytes(), sys.byteorder)
            del frame
            lease.release()
        else:
            got = sub.read_latest()
            if got is None:
                continue
            sent = got[0].timestamp_ns if meta else int.from_bytes(got[1][:8], sys.byteorder)
        now = time.time_ns() if meta else time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        if len(lat) < 200_000:
            lat.append(max(0, now - sent))
        frames += 1
        first = first or now
        last_at = now
    usage = resource.getrusage(resource.RUSAGE_SELF)
    secs = (last_at - first) / 1e9 if first else 0.0
    print(json.dumps({"frames": max(0, frames - 1), "secs": secs, "cpu": usage.ru_utime + usage.ru_stime, "sink": sink, "lat": lat}), flush=True)


main()
