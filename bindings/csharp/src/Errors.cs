using System;

namespace Shmcast
{
    /// <summary>
    /// A shmcast call failed. <see cref="Status"/> is the C ABI's code, the
    /// message the library's own (what failed, on which channel, what to do).
    /// Catch the subclasses for what you can act on.
    /// </summary>
    public class ShmcastException : Exception
    {
        public Status Status { get; }

        public ShmcastException(Status status, string message) : base(message) { Status = status; }

        internal static ShmcastException From(Status status, string message)
        {
            switch (status)
            {
                case Status.NotFound: return new ShmcastNotFoundException(message);
                case Status.Timeout: return new ShmcastTimeoutException(message);
                case Status.PermissionDenied: return new ShmcastPermissionDeniedException(message);
                case Status.AlreadyExists: return new ShmcastAlreadyExistsException(message);
                case Status.WriterAlive: return new ShmcastWriterAliveException(message);
                case Status.NoFrame: return new ShmcastNoFrameException(message);
                case Status.Revoked: return new ShmcastRevokedException(message);
                case Status.BufferTooSmall: return new ShmcastBufferTooSmallException(message);
                case Status.InvalidArgument:
                case Status.InvalidName: return new ShmcastArgumentException(status, message);
                default: return new ShmcastException(status, message);
            }
        }
    }

    /// <summary>No segment or channel has this name (yet).</summary>
    public class ShmcastNotFoundException : ShmcastException
    {
        public ShmcastNotFoundException(string message) : base(Status.NotFound, message) { }
    }

    /// <summary>Nothing happened in time: no frame, no channel.</summary>
    public class ShmcastTimeoutException : ShmcastException
    {
        public ShmcastTimeoutException(string message) : base(Status.Timeout, message) { }
    }

    /// <summary>The OS refused access; the creator must grant it.</summary>
    public class ShmcastPermissionDeniedException : ShmcastException
    {
        public ShmcastPermissionDeniedException(string message) : base(Status.PermissionDenied, message) { }
    }

    /// <summary>The name is taken.</summary>
    public class ShmcastAlreadyExistsException : ShmcastException
    {
        public ShmcastAlreadyExistsException(string message) : base(Status.AlreadyExists, message) { }
    }

    /// <summary>Another live process publishes on this channel.</summary>
    public class ShmcastWriterAliveException : ShmcastException
    {
        public ShmcastWriterAliveException(string message) : base(Status.WriterAlive, message) { }
    }

    /// <summary>Nothing has been published on the channel yet.</summary>
    public class ShmcastNoFrameException : ShmcastException
    {
        public ShmcastNoFrameException(string message) : base(Status.NoFrame, message) { }
    }

    /// <summary>The publisher revoked a lease: discard what was read through it.</summary>
    public class ShmcastRevokedException : ShmcastException
    {
        public ShmcastRevokedException(string message) : base(Status.Revoked, message) { }
    }

    /// <summary>The buffer is smaller than the frame.</summary>
    public class ShmcastBufferTooSmallException : ShmcastException
    {
        /// <summary>The frame's length: the buffer size needed (0 when not known).</summary>
        public long Needed { get; }

        public ShmcastBufferTooSmallException(string message, long needed = 0) : base(Status.BufferTooSmall, message) { Needed = needed; }
    }

    /// <summary>A bad name or argument, refused by the library.</summary>
    public class ShmcastArgumentException : ShmcastException
    {
        public ShmcastArgumentException(Status status, string message) : base(status, message) { }
    }
}
