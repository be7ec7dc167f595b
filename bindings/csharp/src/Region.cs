using System;
using System.Runtime.InteropServices;

namespace Shmcast
{
    /// <summary>Flags for <see cref="Region.Create"/>.</summary>
    [Flags]
    public enum RegionCreateFlags : uint
    {
        None = 0,
        /// <summary>Replace a region of this name whose creator is dead (Linux).</summary>
        ReplaceStale = 1,
        /// <summary>Keep the name after the creator closes it (Linux).</summary>
        Persist = 2,
        /// <summary>Every user may read it (Linux mode 0644; default 0600).</summary>
        WorldReadable = 4,
    }

    /// <summary>
    /// A raw named shared memory region with a crash-safe lock. Thread-safe:
    /// reads and writes from any threads at once.
    /// </summary>
    public sealed unsafe class Region : IDisposable
    {
        private readonly RegionHandle handle;

        private Region(RegionHandle handle) { this.handle = handle; }

        /// <summary>Creates region <paramref name="name"/> of <paramref name="size"/> bytes, zero-filled.</summary>
        public static Region Create(string name, long size, RegionCreateFlags flags = RegionCreateFlags.None)
        {
            if (size <= 0) throw new ArgumentOutOfRangeException(nameof(size), "a region needs at least one byte");
            RegionHandle h;
            fixed (byte* n = Native.Utf8(name, nameof(name)))
                Native.Check(Native.shmcast_region_create(n, (ulong)size, (uint)flags, out h));
            return new Region(h);
        }

        /// <summary>Opens the existing region <paramref name="name"/>.</summary>
        public static Region Open(string name, bool readOnly = false)
        {
            RegionHandle h;
            fixed (byte* n = Native.Utf8(name, nameof(name)))
                Native.Check(Native.shmcast_region_open(n, readOnly ? 1u : 0u, out h));
            return new Region(h);
        }

        /// <summary>The region's size in bytes.</summary>
        public long Size { get { return (long)Native.shmcast_region_size(handle); } }

        /// <summary>Copies <c>buffer.Length</c> bytes at <paramref name="offset"/> (a consistent copy).</summary>
        public void Read(long offset, Span<byte> buffer)
        {
            if (offset < 0) throw new ArgumentOutOfRangeException(nameof(offset));
            fixed (byte* b = &MemoryMarshal.GetReference(buffer))
                Native.Check(Native.shmcast_region_read(handle, (ulong)offset, b, (UIntPtr)buffer.Length));
        }

        /// <summary>Writes <paramref name="data"/> at <paramref name="offset"/>, under the region's write lock.</summary>
        public void Write(long offset, ReadOnlySpan<byte> data)
        {
            if (offset < 0) throw new ArgumentOutOfRangeException(nameof(offset));
            fixed (byte* d = &MemoryMarshal.GetReference(data))
                Native.Check(Native.shmcast_region_write(handle, (ulong)offset, d, (UIntPtr)data.Length));
        }

        public void Dispose() { handle.Dispose(); }
    }
}
