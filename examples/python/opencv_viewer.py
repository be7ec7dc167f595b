"""A live OpenCV window on a shmcast channel, through the service's restarts:
start it before or after the service, stop, kill or restart the service;
the title shows the frame number, the frame rate and the health. Esc or q
in the window, or closing it, ends it.

    python examples/python/opencv_viewer.py demo

Needs `pip install shmcast opencv-python`.
"""

import sys
import time

import cv2
import numpy as np

import shmcast

name = sys.argv[1] if len(sys.argv) > 1 else "demo"
window = f"shmcast {name}"
cv2.namedWindow(window, cv2.WINDOW_AUTOSIZE)
reader = shmcast.Reader(name)
number, fps, count, since = 0, 0.0, 0, time.monotonic()
image = np.zeros((480, 640, 3), np.uint8)

# The timeout brings the loop round while no frame comes, so that the
# window stays responsive and its title shows the health.
for frame in reader.frames(timeout=0.05):
    if frame is not None:
        try:
            rgb = frame.to_rgb()  # the library's conversion, any pixel format
        except shmcast.Error as e:
            print(e, file=sys.stderr)  # metadata that does not fit: skip it
            continue
        try:
            frame.release()
        except shmcast.Revoked:
            continue  # overwritten while we converted: discard
        number, count = frame.info.number, count + 1
        image = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        if image.shape[1] < 640:  # small frames shown larger, pixels kept sharp
            scale = 640 // image.shape[1]
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    if time.monotonic() - since >= 1:
        fps, count, since = count / (time.monotonic() - since), 0, time.monotonic()
    cv2.imshow(window, image)
    cv2.setWindowTitle(window, f"shmcast: {name}  frame {number}  {fps:.1f} fps  {reader.health}")
    if cv2.waitKey(1) in (27, ord("q")) or cv2.getWindowProperty(window, cv2.WND_PROP_VISIBLE) < 1:
        break
cv2.destroyAllWindows()
