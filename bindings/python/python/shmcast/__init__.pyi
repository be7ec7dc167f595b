"""Type stubs for shmcast (the extension module shmcast._shmcast)."""

import sys
from types import TracebackType
from typing import Literal, Optional, Self, overload

if sys.version_info >= (3, 12):
    from collections.abc import Buffer
else:
    from typing_extensions import Buffer

__version__: str

# Pixel format names (case-insensitive; ffmpeg's gray, yuyv422 and yuv420p
# are accepted too): raw, rgb24, bgr24, rgba, bgra, gray8, yuyv, nv12, i420.
_PixelFormat = str
_Health = Literal["live", "stalled", "gone", "truncated"]

class Error(Exception):
    """Any shmcast failure; the message says what failed and what to do."""

class NotFound(Error):
    """No segment or channel has this name."""

class Timeout(Error):
    """Nothing happened in time: no frame, no channel."""

class WriterAlive(Error):
    """Another live process publishes on this channel."""

class AlreadyExists(Error):
    """The name is taken."""

class PermissionDenied(Error):
    """The OS refused access; the creator must grant it."""

class InvalidName(Error):
    """The name breaks the naming rule (1-200 of A-Z a-z 0-9 - _ .)."""

class Revoked(Error):
    """The publisher revoked a lease: discard what was read through it."""

class Truncated(Error):
    """Another process truncated the shared memory: nothing more comes
    through it (a publisher of the name replaces the channel)."""

class AllSlotsLeased(Error):
    """Subscribers lease every free slot: the frame was dropped."""

class TooLarge(Error):
    """The frame is larger than the channel's slots."""

class BufferTooSmall(Error):
    """The buffer is smaller than the frame."""

class NotLeasing(Error):
    """Leasing needs a subscriber opened with leasing=True."""

class FrameInfo:
    """A frame's number and metadata."""

    @property
    def number(self) -> int:
        """1 for the channel's first frame, one more per frame."""
    @property
    def len(self) -> int:
        """Payload bytes."""
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def stride(self) -> int:
        """Bytes per row of the first plane."""
    @property
    def format(self) -> str:
        """The pixel format's name: raw, rgb24, bgr24, rgba, bgra, gray8, yuyv, nv12 or i420."""
    @property
    def timestamp_ns(self) -> int:
        """Capture time, nanoseconds since the Unix epoch."""
    @property
    def metadata_len(self) -> int:
        """Bytes of per-frame metadata the frame carries."""
    @property
    def metadata(self) -> bytes:
        """The frame's per-frame metadata (empty when it has none), copied
        with the frame under the same check: never another frame's. (From a
        Lease, trust it only if release() raises nothing, as its pixels.)"""

class Subscriber:
    """A channel's subscriber; read-only unless opened with leasing=True.

    Any thread may use it; one thread may wait while another reads or leases.
    Methods raise ValueError once it is closed.
    """

    def __init__(self, name: str, timeout: Optional[float] = 0.0, leasing: bool = False) -> None:
        """Subscribes to channel `name`, waiting up to `timeout` seconds for
        it to appear (0: fail at once with NotFound; None: no limit).
        leasing=True also lets it lease frames in place, which needs write
        access to the channel's lease table."""
    def wait(self, after: int = 0, timeout: Optional[float] = None) -> int:
        """Blocks until a frame newer than `after` is published and returns
        its number; releases the GIL and uses no CPU while it waits, and
        looks for Ctrl-C (KeyboardInterrupt) and close() every 0.1 s. Raises
        Timeout. Follows the name to a restarted publisher's channel (frame
        numbers then start again)."""
    @overload
    def read_latest(self, out: None = None) -> Optional[tuple[FrameInfo, bytes]]:
        """The latest frame, copied: (FrameInfo, bytes), or None before the
        first one. Always one whole frame."""
    @overload
    def read_latest(self, out: Buffer) -> Optional[FrameInfo]:
        """Copies the latest frame into `out` (a writable C-contiguous
        buffer of any item type: bytearray, numpy array, ...) without
        holding the GIL and returns its FrameInfo, or None before the first
        frame. Raises BufferTooSmall."""
    def lease_latest(self) -> Optional[Lease]:
        """Leases the latest frame in place (needs leasing=True, else
        NotLeasing), or None before the first frame. One lease per
        subscriber at a time: a second raises Error until the first is
        released."""
    def health(self, stall_after: float = 2.0) -> _Health:
        """"live", "stalled" (no frame for `stall_after` s), "gone", or
        "truncated" (another process cut the channel's memory: nothing more
        comes through it)."""
    @property
    def name(self) -> str: ...
    @property
    def leasing(self) -> bool: ...
    @property
    def max_frame_len(self) -> int: ...
    @property
    def latest_number(self) -> int:
        """The newest frame's number (0: none yet)."""
    @property
    def publisher_pid(self) -> Optional[int]: ...
    @property
    def closed(self) -> bool: ...
    def close(self) -> None:
        """Closes it; leases taken from it stay valid until released."""
    def __enter__(self) -> Self: ...
    def __exit__(self, ty: Optional[type[BaseException]], value: Optional[BaseException], tb: Optional[TracebackType]) -> bool: ...

class Lease(Buffer):
    """A frame leased in place: a read-only buffer over shared memory.

    np.frombuffer(lease, np.uint8) copies nothing. The lease stays held while
    any view of it lives; release() (or leaving a `with` block) while views
    exist raises BufferError. The publisher keeps off the slot meanwhile, and
    revokes the lease only if it holds its last free slot for longer than
    the channel's max lease (then release() raises Revoked).

    The contract: the bytes a view shows can change if the lease is revoked
    while you read (a slow or stopped reader), so use what you read or
    computed from them only after release() returned without Revoked. To
    keep a frame longer, copy it (bytes(lease), numpy's .copy()).
    """

    def release(self) -> None:
        """Ends the lease; raises BufferError while views exist, Revoked if
        the publisher revoked it. Releasing twice is allowed."""
    def array(self) -> Any:
        """The frame as a numpy array over its own bytes (no copy), shaped for
        its format with the stride honoured: (h, w, 3) rgb24/bgr24, (h, w, 4)
        rgba/bgra, (h, w) gray8, (h, w, 2) yuyv, (h*3//2, w) nv12/i420 (an
        i420 frame whose stride is not its width comes as a packed copy).
        Raises Error when the metadata does not fit the frame's bytes."""
    def to_rgb(self) -> Any:
        """The frame converted to RGB by the library: a new (h, w, 3) array."""
    @property
    def info(self) -> FrameInfo: ...
    @property
    def metadata(self) -> bytes:
        """The frame's per-frame metadata (b"" when it has none), read with
        the frame: like the pixels, trust it only if release() does not
        raise Revoked."""
    @property
    def intact(self) -> bool:
        """Whether the frame is still the one leased (not revoked so far)."""
    @property
    def released(self) -> bool: ...
    @property
    def address(self) -> int:
        """The frame's address in memory."""
    def __len__(self) -> int: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, ty: Optional[type[BaseException]], value: Optional[BaseException], tb: Optional[TracebackType]) -> bool: ...

class Reader:
    """Reads a channel by name for as long as it is asked to: needs no
    channel to start, goes on through the publisher's crashes, take-overs,
    restarts and stalls. access: "auto" (lease when allowed, else copy),
    "lease" or "copy"."""

    def __init__(self, name: str, access: str = "auto", stall_after: float = 2.0) -> None: ...
    def frames(
        self, timeout: Optional[float] = None, on_error: Optional[Callable[[Error], None]] = None
    ) -> Iterator[Optional[Lease]]:
        """Every new frame until the loop is left; with a timeout, None each
        time that long passes without one."""
    def next(self, timeout: Optional[float] = None) -> Optional[Lease]:
        """The next frame newer than the last, or None when nothing came."""
    @property
    def health(self) -> str:
        """"missing", "live", "stalled", "gone" or "truncated"."""
    @property
    def stall_reason(self) -> Optional[str]: ...
    @property
    def name(self) -> str: ...
    @property
    def leases(self) -> bool: ...

class Publisher:
    """The one process that publishes frames on a channel."""

    def __init__(
        self,
        name: str,
        max_frame_len: int,
        slots: int = 4,
        mode: Optional[int] = None,
        lease_mode: Optional[int] = None,
        sddl: Optional[str] = None,
        lease_sddl: Optional[str] = None,
        max_lease: Optional[float] = None,
        max_metadata: int = 0,
    ) -> None:
        """Creates channel `name` for frames of up to `max_frame_len` bytes,
        each with up to `max_metadata` bytes of metadata (at most 65536).
        mode/lease_mode: Linux permission bits of the channel (readers need
        read access only, e.g. 0o644) and of its lease table (leasing
        readers write it); sddl/lease_sddl: the same on Windows. A channel
        whose publisher died is taken over; a live one raises WriterAlive."""
    def publish(
        self,
        data: Buffer,
        width: int = 0,
        height: int = 0,
        format: _PixelFormat = "raw",
        stride: int = 0,
        timestamp_ns: int = 0,
        metadata: Optional[Buffer] = None,
    ) -> int:
        """Publishes `data` (C-contiguous) as the next frame, one copy into
        shared memory, with `metadata` as its per-frame metadata; returns
        its number. Raises TooLarge (the frame, or the metadata beyond
        max_metadata), AllSlotsLeased (the frame was dropped; the publisher
        never waits)."""
    def loan(self, n: int) -> Loan:
        """Lends `n` bytes of a free slot, writable, to fill in place."""
    @property
    def name(self) -> str: ...
    @property
    def max_frame_len(self) -> int: ...
    @property
    def max_metadata(self) -> int:
        """The most bytes of per-frame metadata a frame can carry."""
    @property
    def closed(self) -> bool: ...
    def close(self) -> None:
        """Stops publishing; subscribers see the publisher gone (and on
        Linux the name is removed). Raises BufferError while views of a loan
        exist. Close publishers explicitly (or use `with`): one left to the
        garbage collector at exit may leave its name behind."""
    def __enter__(self) -> Self: ...
    def __exit__(self, ty: Optional[type[BaseException]], value: Optional[BaseException], tb: Optional[TracebackType]) -> bool: ...

class Loan(Buffer):
    """A slot on loan: a writable buffer in shared memory
    (np.frombuffer(loan, np.uint8) writes straight into it)."""

    def commit(
        self,
        width: int = 0,
        height: int = 0,
        format: _PixelFormat = "raw",
        stride: int = 0,
        timestamp_ns: int = 0,
        metadata: Optional[Buffer] = None,
    ) -> int:
        """Publishes the slot as the next frame, with `metadata`; returns its
        number. Raises BufferError while views of the loan exist, TooLarge
        when the metadata is longer than max_metadata (the loan stays out)."""
    def abandon(self) -> None:
        """Gives the slot back unpublished."""
    def __len__(self) -> int: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, ty: Optional[type[BaseException]], value: Optional[BaseException], tb: Optional[TracebackType]) -> bool:
        """Abandons the loan if it was not committed."""

class Region:
    """A raw named shared memory region."""

    def __init__(
        self,
        name: str,
        size: Optional[int] = None,
        read_only: bool = False,
        mode: Optional[int] = None,
        persist: bool = False,
    ) -> None:
        """With `size`, creates region `name` (zero-filled); without, opens it."""
    def read(self, offset: int = 0, length: Optional[int] = None) -> bytes: ...
    def write(self, data: Buffer, offset: int) -> None:
        """Writes `data` at `offset` under the region's lock (without the GIL)."""
    @property
    def size(self) -> int: ...
    @property
    def name(self) -> str: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, ty: Optional[type[BaseException]], value: Optional[BaseException], tb: Optional[TracebackType]) -> bool: ...
