using System;
using System.Runtime.InteropServices;

namespace Shmcast
{
    /// <summary>What a subscriber may do.</summary>
    public enum SubscriberAccess
    {
        /// <summary>Wait, copy, health: needs read access only, writes nothing to shared memory.</summary>
        ReadOnly = 0,
        /// <summary>Also lease frames in place (<see cref="Subscriber.LeaseLatest"/>); needs write access to the lease table.</summary>
        Leasing = 1,
    }

    /// <summary>
    /// One process's view of a channel. Thread-safe in the way a GUI needs:
    /// one thread may block in <see cref="WaitForFrame"/> while another
    /// copies or leases; other calls are serialised. One lease at a time.
    /// </summary>
    public sealed unsafe class Subscriber : IDisposable
    {
        private readonly SubscriberHandle handle;

        private Subscriber(SubscriberHandle handle) { this.handle = handle; }

        /// <summary>
        /// Subscribes to channel <paramref name="name"/>, waiting up to
        /// <paramref name="timeout"/> for it to appear (default: fail at once
        /// with <see cref="ShmcastNotFoundException"/>).
        /// </summary>
        public static Subscriber Open(string name, SubscriberAccess access = SubscriberAccess.ReadOnly, TimeSpan? timeout = null)
        {
            SubscriberHandle h;
            uint ms = timeout.HasValue ? Native.Millis(timeout.Value) : 0;
            fixed (byte* n = Native.Utf8(name, nameof(name)))
                Native.Check(Native.shmcast_subscriber_open(n, (uint)access, ms, out h));
            return new Subscriber(h);
        }

        /// <summary>The largest frame the channel carries: the buffer size ReadLatest may need.</summary>
        public long MaxFrameLength { get { return (long)Native.shmcast_subscriber_max_frame_len(handle); } }

        /// <summary>The newest frame's number (0: none yet).</summary>
        public ulong LatestFrameNumber { get { return Native.shmcast_subscriber_latest_number(handle); } }

        /// <summary>
        /// Blocks (in the kernel, no spinning) until a frame newer than
        /// <paramref name="after"/> is published; returns the newest number.
        /// Throws <see cref="ShmcastTimeoutException"/> when none came in time.
        /// Dispose does not interrupt a wait: give a finite timeout to a thread
        /// that must notice the subscriber closing.
        /// </summary>
        public ulong WaitForFrame(ulong after, TimeSpan timeout)
        {
            ulong newest;
            Native.Check(Native.shmcast_subscriber_wait(handle, after, Native.Millis(timeout), out newest));
            return newest;
        }

        /// <summary>
        /// As <see cref="WaitForFrame"/>, but a timeout returns false instead of
        /// throwing; <paramref name="newest"/> is the newest frame's number either way.
        /// </summary>
        public bool TryWaitForFrame(ulong after, TimeSpan timeout, out ulong newest)
        {
            int status = Native.shmcast_subscriber_wait(handle, after, Native.Millis(timeout), out newest);
            if (status == (int)Status.Timeout) return false;
            Native.Check(status);
            return true;
        }

        /// <summary>
        /// Copies the latest frame into <paramref name="buffer"/> (always one
        /// whole frame) and returns its metadata. Throws
        /// <see cref="ShmcastNoFrameException"/> before the first frame and
        /// <see cref="ShmcastBufferTooSmallException"/> when it does not fit.
        /// </summary>
        public FrameInfo ReadLatest(Span<byte> buffer)
        {
            var info = NativeFrameInfo.New();
            int status;
            fixed (byte* b = &MemoryMarshal.GetReference(buffer))
                status = Native.shmcast_subscriber_read_latest(handle, b, (UIntPtr)buffer.Length, ref info);
            if (status == (int)Status.BufferTooSmall)
                throw new ShmcastBufferTooSmallException(Native.LastError(), (long)info.Len);
            Native.Check(status);
            return FrameInfo.From(ref info);
        }

        /// <summary>
        /// As <see cref="ReadLatest(Span{byte})"/>, and the frame's per-frame
        /// metadata, copied with it (an empty array when it has none).
        /// </summary>
        public FrameInfo ReadLatest(Span<byte> buffer, out byte[] metadata)
        {
            var info = NativeFrameInfo.New();
            var got = new byte[MaxMetadataLength];
            int status;
            fixed (byte* b = &MemoryMarshal.GetReference(buffer))
            fixed (byte* m = got)
                status = Native.shmcast_subscriber_read_latest_with_metadata(handle, b, (UIntPtr)buffer.Length,
                    m, (UIntPtr)got.Length, ref info);
            if (status == (int)Status.BufferTooSmall)
                throw new ShmcastBufferTooSmallException(Native.LastError(), (long)info.Len);
            Native.Check(status);
            var result = FrameInfo.From(ref info);
            metadata = new byte[result.MetadataLength];
            Array.Copy(got, metadata, result.MetadataLength);
            result.MetadataAddress = IntPtr.Zero;
            return result;
        }

        /// <summary>The most bytes of per-frame metadata a frame carries (0: none).</summary>
        public long MaxMetadataLength { get { return (long)Native.shmcast_subscriber_max_metadata_len(handle); } }

        /// <summary>As <see cref="ReadLatest(Span{byte})"/>, into an array.</summary>
        public FrameInfo ReadLatest(byte[] buffer)
        {
            if (buffer == null) throw new ArgumentNullException(nameof(buffer));
            return ReadLatest(new Span<byte>(buffer));
        }

        /// <summary>
        /// Leases the latest frame in place: no copy, and the publisher keeps
        /// off it until the lease is disposed (or revokes it if it is held
        /// too long while the publisher has no other slot; see
        /// <see cref="FrameLease.Release"/>). Needs <see cref="SubscriberAccess.Leasing"/>.
        /// </summary>
        public FrameLease LeaseLatest()
        {
            var lease = new LeaseHandle(handle);
            try
            {
                IntPtr raw;
                Native.Check(Native.shmcast_subscriber_lease_latest(handle, out raw));
                lease.Set(raw);
                return new FrameLease(lease);
            }
            catch
            {
                lease.Dispose();
                throw;
            }
        }

        /// <summary>
        /// As <see cref="LeaseLatest"/>, but false (and no exception) before
        /// the first frame: for a draw handler that may run before the
        /// publisher has published.
        /// </summary>
        public bool TryLeaseLatest(out FrameLease lease)
        {
            lease = null;
            var held = new LeaseHandle(handle);
            try
            {
                IntPtr raw;
                int status = Native.shmcast_subscriber_lease_latest(handle, out raw);
                if (status == (int)Status.NoFrame) { held.Dispose(); return false; }
                Native.Check(status);
                held.Set(raw);
                lease = new FrameLease(held);
                return true;
            }
            catch
            {
                held.Dispose();
                throw;
            }
        }

        /// <summary>The publisher's health, calling it stalled after <paramref name="stallAfter"/> without a frame.</summary>
        public ChannelHealth GetHealth(TimeSpan stallAfter)
        {
            int health;
            Native.Check(Native.shmcast_subscriber_health(handle, Native.Millis(stallAfter), out health));
            return (ChannelHealth)health;
        }

        /// <summary>The publisher's health, stalled after 2 s without a frame.</summary>
        public ChannelHealth Health { get { return GetHealth(TimeSpan.FromSeconds(2)); } }

        /// <summary>Closes the subscriber; an outstanding lease keeps it open until that lease is disposed.</summary>
        public void Dispose() { handle.Dispose(); }
    }

    /// <summary>
    /// A frame leased in place, in shared memory. <see cref="Data"/> is the
    /// frame itself (no copy); it is valid until Dispose, after which every
    /// member throws <see cref="ObjectDisposedException"/>. Dispose (or
    /// <see cref="Release"/>) promptly: the publisher keeps off the slot
    /// meanwhile. May be used and disposed on any thread, but not disposed
    /// while another thread uses it.
    /// <para>
    /// The span does not keep the lease alive: use <see cref="Data"/> only
    /// while the FrameLease is referenced, as inside its <c>using</c> block. A
    /// FrameLease that is dropped without Dispose is released by its
    /// finalizer, and a span taken from it then points at memory that may be
    /// overwritten or (if its Subscriber was disposed) unmapped.
    /// </para>
    /// </summary>
    public sealed unsafe class FrameLease : IDisposable
    {
        private readonly LeaseHandle handle;
        private readonly FrameInfo info;
        private readonly IntPtr data;
        private bool disposed;

        internal FrameLease(LeaseHandle handle)
        {
            this.handle = handle;
            var n = NativeFrameInfo.New();
            IntPtr d;
            ulong len;
            Native.Check(Native.shmcast_lease_data(handle.DangerousGetHandle(), out d, out len, ref n));
            info = FrameInfo.From(ref n);
            data = d;
        }

        private void CheckLive()
        {
            if (disposed) throw new ObjectDisposedException(nameof(FrameLease), "this frame lease was disposed; lease the frame again");
        }

        /// <summary>
        /// The frame's bytes in shared memory, read-only. The publisher keeps
        /// off them while the lease holds, but a lease is bounded: one that
        /// keeps the publisher from every free slot for longer than the
        /// channel's max lease (a slow or suspended reader) is revoked, and the
        /// slot is rewritten under the span. So use what was read, or computed
        /// from it, only after <see cref="Release"/> returned without
        /// <see cref="ShmcastRevokedException"/>; copy what you keep.
        /// </summary>
        public ReadOnlySpan<byte> Data
        {
            get { CheckLive(); return new ReadOnlySpan<byte>((void*)data, info.Length); }
        }

        /// <summary>
        /// The frame's per-frame metadata in shared memory (empty when it has
        /// none), under the same promise as <see cref="Data"/>: trust it only
        /// after <see cref="Release"/> returned.
        /// </summary>
        public ReadOnlySpan<byte> Metadata
        {
            get { CheckLive(); return new ReadOnlySpan<byte>((void*)info.MetadataAddress, info.MetadataLength); }
        }

        public FrameInfo Info { get { CheckLive(); return info; } }
        public ulong FrameNumber { get { return Info.Number; } }
        public uint Width { get { return Info.Width; } }
        public uint Height { get { return Info.Height; } }
        public uint Stride { get { return Info.Stride; } }
        public FrameFormat Format { get { return Info.Format; } }
        public ulong TimestampNs { get { return Info.TimestampNs; } }

        /// <summary>
        /// Ends the lease, throwing <see cref="ShmcastRevokedException"/> when
        /// the publisher revoked it (what was read may be torn: discard it).
        /// </summary>
        public void Release()
        {
            CheckLive();
            disposed = true;
            int status = handle.Release();
            string message = status == 0 ? null : Native.LastError();
            handle.Dispose();
            if (status != 0) throw ShmcastException.From((Status)status, message);
        }

        /// <summary>Ends the lease (without telling whether it was revoked; see <see cref="Release"/>).</summary>
        public void Dispose()
        {
            disposed = true;
            handle.Dispose();
        }
    }
}
