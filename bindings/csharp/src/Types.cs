using System;

namespace Shmcast
{
    /// <summary>
    /// How a frame's bytes encode pixels (the C ABI's <c>shmcast_pixel_format</c>).
    /// Not called PixelFormat: Avalonia, WPF and System.Drawing each have one,
    /// and <c>using</c> both namespaces would make every mention ambiguous.
    /// </summary>
    public enum FrameFormat : uint
    {
        Raw = 0,
        Rgb24 = 1,
        Bgr24 = 2,
        Rgba = 3,
        Gray8 = 4,
        Yuyv = 5,
        Nv12 = 6,
        I420 = 7,
        /// <summary>B, G, R, A: WPF's and Avalonia's Bgra32, copied in unconverted.</summary>
        Bgra = 8,
    }

    /// <summary>What a subscriber can tell about the publisher.</summary>
    public enum ChannelHealth
    {
        /// <summary>The publisher runs and published within the stall limit.</summary>
        Live = 0,
        /// <summary>The publisher runs but has published nothing for the stall limit.</summary>
        Stalled = 1,
        /// <summary>No publisher: it stopped, or its process died.</summary>
        Gone = 2,
        /// <summary>Another process truncated the channel's shared memory: nothing more comes through it.</summary>
        Truncated = 3,
        /// <summary>No channel of the name (yet): only a <see cref="FrameReader"/> says this.</summary>
        Missing = 4,
    }

    /// <summary>A frame's metadata as a publisher gives it.</summary>
    public struct FrameMeta
    {
        public uint Width;
        public uint Height;
        /// <summary>Bytes per row of the first plane; 0: the format's minimum.</summary>
        public uint Stride;
        public FrameFormat Format;
        /// <summary>Capture time, ns since the Unix epoch; 0: the time of publishing.</summary>
        public ulong TimestampNs;

        public FrameMeta(uint width, uint height, FrameFormat format)
        {
            Width = width; Height = height; Format = format; Stride = 0; TimestampNs = 0;
        }

        internal NativeFrameMeta ToNative()
        {
            return new NativeFrameMeta
            {
                Size = (uint)System.Runtime.InteropServices.Marshal.SizeOf(typeof(NativeFrameMeta)),
                Width = Width,
                Height = Height,
                Stride = Stride,
                Format = (uint)Format,
                TimestampNs = TimestampNs,
            };
        }
    }

    /// <summary>A published frame's number and metadata.</summary>
    public struct FrameInfo
    {
        /// <summary>1 for the channel's first frame, one more per frame.</summary>
        public ulong Number;
        /// <summary>Payload bytes.</summary>
        public int Length;
        public uint Width;
        public uint Height;
        public uint Stride;
        public FrameFormat Format;
        public ulong TimestampNs;
        /// <summary>Bytes of per-frame metadata the frame carries (the frame's <c>Metadata</c>).</summary>
        public int MetadataLength;
        /// <summary>Where the metadata lies while the frame is held.</summary>
        internal IntPtr MetadataAddress;

        internal static FrameInfo From(ref NativeFrameInfo n)
        {
            return new FrameInfo
            {
                Number = n.Number,
                Length = checked((int)n.Len),
                Width = n.Width,
                Height = n.Height,
                Stride = n.Stride,
                Format = (FrameFormat)n.Format,
                TimestampNs = n.TimestampNs,
                MetadataLength = checked((int)n.MetadataLen),
                MetadataAddress = n.Metadata,
            };
        }

        public override string ToString()
        {
            return $"frame {Number}: {Length} bytes, {Width}x{Height} {Format}";
        }
    }

    /// <summary>The library's version.</summary>
    public static class Library
    {
        public static string Version
        {
            get { return System.Runtime.InteropServices.Marshal.PtrToStringAnsi(Native.shmcast_version()); }
        }
    }
}
