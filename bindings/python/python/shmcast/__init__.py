"""shmcast: named shared memory frame channels for Linux and Windows.

One process publishes frames (a camera service, say); any number of
processes read the latest one by name, by copy or in place:

    import numpy as np, shmcast

    with shmcast.Subscriber("cam", timeout=5, leasing=True) as sub:
        seen = sub.wait()
        with sub.lease_latest() as lease:          # the frame in shared memory
            info = lease.info
            frame = np.frombuffer(lease, np.uint8).reshape(info.height, info.width, 3)
            ...                                    # no copy was made
            del frame                              # views must go before the lease

A loop that keeps going through the publisher's restarts, crashes and
stalls, and starts before it:

    reader = shmcast.Reader("cam")
    for frame in reader.frames():                  # ends only when you break
        image = frame.array()                      # (h, w, 3) for rgb24, stride honoured
        ...
        del image

See the type stubs (__init__.pyi) for the whole API.
"""

import logging as _logging

from ._shmcast import (
    AllSlotsLeased,
    AlreadyExists,
    BufferTooSmall,
    Error,
    FrameInfo,
    InvalidName,
    Lease,
    Loan,
    NotFound,
    NotLeasing,
    PermissionDenied,
    Publisher,
    Region,
    Revoked,
    Subscriber,
    Timeout,
    TooLarge,
    Truncated,
    WriterAlive,
    _Reader,
    __version__,
)

_log = _logging.getLogger("shmcast")


class Reader(_Reader):
    """Reads a channel by name for as long as it is asked to.

    It needs no channel to start (health "missing" until the publisher
    creates it), and goes on through a publisher's crash and take-over, a
    clean stop and a new start, and a stalled source. `access`: "auto"
    (lease frames in place when allowed, copy otherwise), "lease" or
    "copy". `stall_after`: seconds without a frame before a running
    publisher counts as stalled.
    """

    def frames(self, timeout=None, on_error=None):
        """Every new frame, as a Lease, until the loop is left.

        With a `timeout` (seconds), yields None each time that long passes
        without a frame, so that the loop can look at a stop flag or at
        `health`; without one it waits as long as it takes. A frame is
        released when the loop moves on; call `frame.release()` yourself
        to learn whether it stayed whole (it raises Revoked otherwise).
        Errors of one step go to `on_error` (default: the "shmcast" logger)
        and the frames go on.
        """
        while True:
            try:
                frame = self.next(timeout)
            except Error as e:
                if on_error is not None:
                    on_error(e)
                else:
                    _log.warning("%s", e)
                continue
            if frame is None:
                yield None
                continue
            try:
                yield frame
            finally:
                try:
                    frame.release()
                except (BufferError, Revoked):
                    pass  # views still alive end it later; revoked: the caller did not ask


__all__ = [
    "AllSlotsLeased",
    "AlreadyExists",
    "BufferTooSmall",
    "Error",
    "FrameInfo",
    "InvalidName",
    "Lease",
    "Loan",
    "NotFound",
    "NotLeasing",
    "PermissionDenied",
    "Publisher",
    "Reader",
    "Region",
    "Revoked",
    "Subscriber",
    "Timeout",
    "TooLarge",
    "Truncated",
    "WriterAlive",
    "__version__",
]
