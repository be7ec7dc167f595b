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

See the type stubs (__init__.pyi) for the whole API.
"""

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
    __version__,
)

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
    "Region",
    "Revoked",
    "Subscriber",
    "Timeout",
    "TooLarge",
    "Truncated",
    "WriterAlive",
    "__version__",
]
