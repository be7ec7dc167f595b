using System;
using System.Runtime.InteropServices;

namespace Shmcast
{
    /// <summary>How to create a channel; unset fields keep the library's defaults.</summary>
    public sealed class ChannelConfig
    {
        /// <summary>The largest frame in bytes (required).</summary>
        public long MaxFrameLength;
        /// <summary>Slots, 2 to 64; 0: 4.</summary>
        public int Slots;
        /// <summary>Linux permission bits of the channel (for example 0x1A4 = 0644); 0: 0600.</summary>
        public uint Mode;
        /// <summary>Linux permission bits of the lease table; 0: as Mode.</summary>
        public uint LeaseMode;
        /// <summary>How long a lease that blocks the publisher is honoured; default 1 s.</summary>
        public TimeSpan MaxLease;
        /// <summary>Windows security descriptor (SDDL) of the channel; null: the creator's default.</summary>
        public string Sddl;
        /// <summary>Windows security descriptor of the lease table; null: as Sddl.</summary>
        public string LeaseSddl;
        /// <summary>Bytes of per-frame metadata each frame may carry, at most 65536; 0: none.</summary>
        public int MaxMetadataLength;
    }

    /// <summary>
    /// The one process that publishes frames on a channel. Thread-safe (calls
    /// are serialised); a loan belongs to the publisher, not to a thread.
    /// </summary>
    public sealed unsafe class Publisher : IDisposable
    {
        private readonly PublisherHandle handle;
        private int loanLength = -1;

        private Publisher(PublisherHandle handle) { this.handle = handle; }

        /// <summary>Creates channel <paramref name="name"/> for frames of up to <paramref name="maxFrameLength"/> bytes.</summary>
        public static Publisher Create(string name, long maxFrameLength, int slots = 0)
        {
            return Create(name, new ChannelConfig { MaxFrameLength = maxFrameLength, Slots = slots });
        }

        /// <summary>Creates channel <paramref name="name"/> as <paramref name="config"/> says.</summary>
        public static Publisher Create(string name, ChannelConfig config)
        {
            if (config == null) throw new ArgumentNullException(nameof(config));
            if (config.MaxFrameLength <= 0) throw new ArgumentOutOfRangeException(nameof(config), "MaxFrameLength must be positive");
            if (config.Slots < 0) throw new ArgumentOutOfRangeException(nameof(config), "Slots cannot be negative");
            if (config.MaxLease < TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(config), "MaxLease cannot be negative");
            if (config.MaxMetadataLength < 0) throw new ArgumentOutOfRangeException(nameof(config), "MaxMetadataLength cannot be negative");
            var c = new NativeChannelConfig
            {
                Size = (uint)Marshal.SizeOf(typeof(NativeChannelConfig)),
                Slots = (uint)config.Slots,
                MaxFrameLen = (ulong)config.MaxFrameLength,
                Mode = config.Mode,
                LeaseMode = config.LeaseMode,
                MaxLeaseMs = config.MaxLease == TimeSpan.Zero ? 0 : Native.Millis(config.MaxLease),
                MaxMetadataLen = (uint)config.MaxMetadataLength,
            };
            PublisherHandle h;
            byte[] sddl = config.Sddl == null ? null : Native.Utf8(config.Sddl, "Sddl");
            byte[] leaseSddl = config.LeaseSddl == null ? null : Native.Utf8(config.LeaseSddl, "LeaseSddl");
            fixed (byte* n = Native.Utf8(name, nameof(name)))
            fixed (byte* s = sddl)
            fixed (byte* l = leaseSddl)
            {
                c.Sddl = (IntPtr)s;
                c.LeaseSddl = (IntPtr)l;
                Native.Check(Native.shmcast_publisher_create(n, ref c, out h));
            }
            return new Publisher(h);
        }

        /// <summary>The largest frame the channel takes.</summary>
        public long MaxFrameLength { get { return (long)Native.shmcast_publisher_max_frame_len(handle); } }

        /// <summary>Publishes <paramref name="frame"/> (one copy, into shared memory); returns its number.</summary>
        public ulong Publish(FrameMeta meta, ReadOnlySpan<byte> frame)
        {
            var m = meta.ToNative();
            ulong number;
            fixed (byte* d = &MemoryMarshal.GetReference(frame))
                Native.Check(Native.shmcast_publisher_publish(handle, ref m, d, (UIntPtr)frame.Length, out number));
            return number;
        }

        /// <summary>
        /// Publishes <paramref name="frame"/> with <paramref name="metadata"/> as
        /// its per-frame metadata, in one call (up to the channel's
        /// MaxMetadataLength; longer throws a <see cref="ShmcastException"/>
        /// with <see cref="Status.TooLarge"/>, and nothing is published).
        /// </summary>
        public ulong Publish(FrameMeta meta, ReadOnlySpan<byte> frame, ReadOnlySpan<byte> metadata)
        {
            var m = meta.ToNative();
            ulong number;
            fixed (byte* d = &MemoryMarshal.GetReference(frame))
            fixed (byte* md = &MemoryMarshal.GetReference(metadata))
                Native.Check(Native.shmcast_publisher_publish_with_metadata(handle, ref m, d, (UIntPtr)frame.Length,
                    md, (UIntPtr)metadata.Length, out number));
            return number;
        }

        /// <summary>
        /// Sets the per-frame metadata of the frame on loan (an empty span
        /// clears it); <see cref="Status.NotHeld"/> without a loan.
        /// </summary>
        public void SetMetadata(ReadOnlySpan<byte> metadata)
        {
            fixed (byte* m = &MemoryMarshal.GetReference(metadata))
                Native.Check(Native.shmcast_publisher_set_metadata(handle, m, (UIntPtr)metadata.Length));
        }

        /// <summary>The most bytes of per-frame metadata a frame can carry (0: none).</summary>
        public long MaxMetadataLength { get { return (long)Native.shmcast_publisher_max_metadata_len(handle); } }

        /// <summary>
        /// Lends <paramref name="length"/> bytes of a free slot to fill in place;
        /// publish them with <see cref="Commit(FrameMeta)"/> or drop them with <see cref="Abandon"/>.
        /// The span is shared memory: do not keep it past Commit, Abandon or
        /// Dispose, and keep the Publisher referenced while you use it.
        /// </summary>
        public Span<byte> Loan(int length)
        {
            if (length < 0) throw new ArgumentOutOfRangeException(nameof(length));
            IntPtr p;
            Native.Check(Native.shmcast_publisher_loan(handle, (UIntPtr)length, out p));
            loanLength = length;
            return new Span<byte>((void*)p, length);
        }

        /// <summary>Publishes the loaned bytes; returns the frame's number.</summary>
        public ulong Commit(FrameMeta meta)
        {
            var m = meta.ToNative();
            ulong number;
            Native.Check(Native.shmcast_publisher_commit(handle, ref m, out number));
            loanLength = -1;
            return number;
        }

        /// <summary>
        /// Publishes the loaned bytes with <paramref name="metadata"/> as their
        /// per-frame metadata; returns the frame's number.
        /// </summary>
        public ulong Commit(FrameMeta meta, ReadOnlySpan<byte> metadata)
        {
            SetMetadata(metadata);
            return Commit(meta);
        }

        /// <summary>Ends the loan without publishing.</summary>
        public void Abandon()
        {
            Native.Check(Native.shmcast_publisher_abandon(handle));
            loanLength = -1;
        }

        /// <summary>Whether a slot is on loan.</summary>
        public bool HasLoan { get { return loanLength >= 0; } }

        /// <summary>Stops publishing: subscribers see the publisher gone.</summary>
        public void Dispose()
        {
            handle.Dispose();
            loanLength = -1;
        }
    }
}
