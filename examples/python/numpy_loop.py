"""A reader that keeps going, with numpy: start it before or after
`shmcast serve demo`, stop, kill or restart the service, pause its camera;
it prints the frame rate, the mean colour and the health once a second
until you press Enter (or its input ends).

    python examples/python/numpy_loop.py demo          # a line per second
    python examples/python/numpy_loop.py demo --md5    # a line per frame: number and MD5

Needs `pip install shmcast numpy` (or the wheel from a release).
"""

import hashlib
import sys
import threading
import time

import shmcast

name = sys.argv[1] if len(sys.argv) > 1 else "demo"
per_frame = "--md5" in sys.argv[2:]

# Enter, or the end of input, stops the loop: nothing else does.
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()

reader = shmcast.Reader(name)  # needs no channel yet; follows restarts
health = reader.health
frames, since, mean = 0, time.monotonic(), None
# A timeout makes the loop come round (with None) even while no frame
# comes, to see the stop flag and the health.
for frame in reader.frames(timeout=0.25):
    if stop.is_set():
        break
    if reader.health != health:
        health = reader.health
        print(f"health {health}", flush=True)
    if frame is not None:
        image = frame.array()  # no copy: a view of the frame, stride honoured
        mean = image.reshape(-1, image.shape[-1]).mean(axis=0) if image.ndim == 3 else image.mean()
        md5 = hashlib.md5(frame).hexdigest() if per_frame else None
        del image  # views must go before the frame is released
        try:
            frame.release()
        except shmcast.Revoked:
            continue  # overwritten while we read: discard
        frames += 1
        if per_frame:
            print(f"frame {frame.info.number} {md5}", flush=True)
    if not per_frame and time.monotonic() - since >= 1:
        print(f"{name}: {frames / (time.monotonic() - since):.1f} fps, mean {mean}, {health}", flush=True)
        frames, since = 0, time.monotonic()
print("done", flush=True)
