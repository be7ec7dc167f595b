// The C ABI (include/shmcast.h), declared once. Everything here is
// internal: applications use Region, Publisher and Subscriber.
using System;
using System.Runtime.InteropServices;

namespace Shmcast
{
    /// <summary>Status codes of the C ABI (<c>shmcast_status</c>).</summary>
    public enum Status
    {
        Ok = 0,
        InvalidArgument = -1,
        InvalidName = -2,
        NotFound = -3,
        AlreadyExists = -4,
        PermissionDenied = -5,
        WriterAlive = -6,
        Timeout = -7,
        BufferTooSmall = -8,
        OutOfBounds = -9,
        ReadOnly = -10,
        NoFrame = -11,
        Revoked = -12,
        Overrun = -13,
        TooLarge = -14,
        AllSlotsLeased = -15,
        NotLeasing = -16,
        Busy = -17,
        NotHeld = -18,
        Incompatible = -19,
        Corrupt = -20,
        WriterLost = -21,
        NoSpace = -22,
        Truncated = -23,
        Torn = -24,
        Os = -25,
        Internal = -26,
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeFrameMeta
    {
        public uint Size;
        public uint Width;
        public uint Height;
        public uint Stride;
        public uint Format;
        public uint Reserved;
        public ulong TimestampNs;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeFrameInfo
    {
        public uint Size;
        public uint Format;
        public ulong Number;
        public ulong Len;
        public uint Width;
        public uint Height;
        public uint Stride;
        public uint Reserved;
        public ulong TimestampNs;
        public IntPtr Metadata;
        public ulong MetadataLen;

        public static NativeFrameInfo New()
        {
            return new NativeFrameInfo { Size = (uint)Marshal.SizeOf(typeof(NativeFrameInfo)) };
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeChannelConfig
    {
        public uint Size;
        public uint Slots;
        public ulong MaxFrameLen;
        public uint Mode;
        public uint LeaseMode;
        public uint MaxLeaseMs;
        public uint MaxMetadataLen;
        public IntPtr Sddl;
        public IntPtr LeaseSddl;
    }

    /// <summary>
    /// P/Invoke declarations. "shmcast" resolves to shmcast.dll on Windows and
    /// libshmcast.so on Linux (both runtimes try the lib prefix and the
    /// platform's suffix). Strings are passed as NUL-terminated UTF-8 bytes,
    /// never through the platform's ANSI code page.
    /// </summary>
    internal static unsafe class Native
    {
        private const string Lib = "shmcast";

        [DllImport(Lib)] internal static extern IntPtr shmcast_version();
        [DllImport(Lib)] internal static extern UIntPtr shmcast_last_error_message(byte* buf, UIntPtr capacity);

        [DllImport(Lib)] internal static extern int shmcast_region_create(byte* name, ulong size, uint flags, out RegionHandle handle);
        [DllImport(Lib)] internal static extern int shmcast_region_open(byte* name, uint flags, out RegionHandle handle);
        [DllImport(Lib)] internal static extern int shmcast_region_read(RegionHandle r, ulong offset, byte* buf, UIntPtr len);
        [DllImport(Lib)] internal static extern int shmcast_region_write(RegionHandle r, ulong offset, byte* data, UIntPtr len);
        [DllImport(Lib)] internal static extern ulong shmcast_region_size(RegionHandle r);
        [DllImport(Lib)] internal static extern void shmcast_region_close(IntPtr r);

        [DllImport(Lib)] internal static extern int shmcast_publisher_create(byte* name, ref NativeChannelConfig config, out PublisherHandle handle);
        [DllImport(Lib)] internal static extern int shmcast_publisher_publish(PublisherHandle p, ref NativeFrameMeta meta, byte* data, UIntPtr len, out ulong number);
        [DllImport(Lib)] internal static extern int shmcast_publisher_loan(PublisherHandle p, UIntPtr len, out IntPtr ptr);
        [DllImport(Lib)] internal static extern int shmcast_publisher_commit(PublisherHandle p, ref NativeFrameMeta meta, out ulong number);
        [DllImport(Lib)] internal static extern int shmcast_publisher_set_metadata(PublisherHandle p, byte* metadata, UIntPtr len);
        [DllImport(Lib)] internal static extern int shmcast_publisher_publish_with_metadata(PublisherHandle p, ref NativeFrameMeta meta, byte* data, UIntPtr len, byte* metadata, UIntPtr metadataLen, out ulong number);
        [DllImport(Lib)] internal static extern ulong shmcast_publisher_max_metadata_len(PublisherHandle p);
        [DllImport(Lib)] internal static extern int shmcast_subscriber_read_latest_with_metadata(SubscriberHandle s, byte* buf, UIntPtr capacity, byte* metadata, UIntPtr metadataCapacity, ref NativeFrameInfo info);
        [DllImport(Lib)] internal static extern ulong shmcast_subscriber_max_metadata_len(SubscriberHandle s);
        [DllImport(Lib)] internal static extern int shmcast_publisher_abandon(PublisherHandle p);
        [DllImport(Lib)] internal static extern ulong shmcast_publisher_max_frame_len(PublisherHandle p);
        [DllImport(Lib)] internal static extern void shmcast_publisher_close(IntPtr p);

        [DllImport(Lib)] internal static extern int shmcast_subscriber_open(byte* name, uint flags, uint timeoutMs, out SubscriberHandle handle);
        [DllImport(Lib)] internal static extern int shmcast_subscriber_wait(SubscriberHandle s, ulong after, uint timeoutMs, out ulong newest);
        [DllImport(Lib)] internal static extern int shmcast_subscriber_read_latest(SubscriberHandle s, byte* buf, UIntPtr capacity, ref NativeFrameInfo info);
        [DllImport(Lib)] internal static extern int shmcast_subscriber_lease_latest(SubscriberHandle s, out IntPtr lease);
        [DllImport(Lib)] internal static extern int shmcast_lease_data(IntPtr lease, out IntPtr data, out ulong len, ref NativeFrameInfo info);
        [DllImport(Lib)] internal static extern int shmcast_lease_release(IntPtr lease);
        [DllImport(Lib)] internal static extern int shmcast_subscriber_health(SubscriberHandle s, uint stallAfterMs, out int health);
        [DllImport(Lib)] internal static extern ulong shmcast_subscriber_max_frame_len(SubscriberHandle s);
        [DllImport(Lib)] internal static extern ulong shmcast_subscriber_latest_number(SubscriberHandle s);
        [DllImport(Lib)] internal static extern void shmcast_subscriber_close(IntPtr s);

        [DllImport(Lib)] internal static extern int shmcast_reader_open(byte* name, uint flags, uint stallAfterMs, out ReaderHandle handle);
        [DllImport(Lib)] internal static extern int shmcast_reader_next(ReaderHandle r, uint timeoutMs, out IntPtr data, out ulong len, ref NativeFrameInfo info);
        [DllImport(Lib)] internal static extern int shmcast_reader_release(ReaderHandle r);
        // For a frame holding its own reference on the handle (see ReaderFrame).
        [DllImport(Lib, EntryPoint = "shmcast_reader_release")] internal static extern int shmcast_reader_release_raw(IntPtr r);
        [DllImport(Lib)] internal static extern int shmcast_reader_health(ReaderHandle r, out int health);
        [DllImport(Lib)] internal static extern int shmcast_reader_leases(ReaderHandle r);
        [DllImport(Lib)] internal static extern void shmcast_reader_close(IntPtr r);

        /// <summary>NUL-terminated UTF-8 for a name argument.</summary>
        internal static byte[] Utf8(string s, string what)
        {
            if (s == null) throw new ArgumentNullException(what);
            if (s.IndexOf('\0') >= 0) throw new ArgumentException("a name cannot contain a NUL character", what);
            int n = System.Text.Encoding.UTF8.GetByteCount(s);
            var bytes = new byte[n + 1];
            System.Text.Encoding.UTF8.GetBytes(s, 0, s.Length, bytes, 0);
            return bytes;
        }

        /// <summary>This thread's last error message from the library.</summary>
        internal static string LastError()
        {
            var buf = new byte[512];
            while (true)
            {
                ulong size;
                fixed (byte* p = buf) size = (ulong)shmcast_last_error_message(p, (UIntPtr)buf.Length);
                if (size <= (ulong)buf.Length)
                    return System.Text.Encoding.UTF8.GetString(buf, 0, (int)Math.Max(0, (long)size - 1));
                buf = new byte[size];
            }
        }

        /// <summary>Throws the exception for a failed call's status.</summary>
        internal static void Check(int status)
        {
            if (status != 0) throw ShmcastException.From((Status)status, LastError());
        }

        /// <summary>A timeout in the ABI's milliseconds; infinite or beyond is "no limit".</summary>
        internal static uint Millis(TimeSpan timeout)
        {
            if (timeout == System.Threading.Timeout.InfiniteTimeSpan) return uint.MaxValue;
            if (timeout < TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(timeout), "a timeout cannot be negative");
            double ms = Math.Ceiling(timeout.TotalMilliseconds);
            return ms >= uint.MaxValue ? uint.MaxValue : (uint)ms;
        }
    }
}
