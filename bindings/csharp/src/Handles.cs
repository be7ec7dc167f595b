using System;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Shmcast
{
    // One SafeHandle per handle type of the C ABI: the runtime keeps a handle
    // alive for the length of every call that uses it, closes it exactly
    // once (Dispose or finalizer), and turns a call on a disposed handle
    // into ObjectDisposedException instead of a use-after-free.

    internal sealed class RegionHandle : SafeHandleZeroOrMinusOneIsInvalid
    {
        private RegionHandle() : base(true) { }
        protected override bool ReleaseHandle() { Native.shmcast_region_close(handle); return true; }
    }

    internal sealed class PublisherHandle : SafeHandleZeroOrMinusOneIsInvalid
    {
        private PublisherHandle() : base(true) { }
        protected override bool ReleaseHandle() { Native.shmcast_publisher_close(handle); return true; }
    }

    internal sealed class SubscriberHandle : SafeHandleZeroOrMinusOneIsInvalid
    {
        private SubscriberHandle() : base(true) { }
        protected override bool ReleaseHandle() { Native.shmcast_subscriber_close(handle); return true; }
    }

    internal sealed class ReaderHandle : SafeHandleZeroOrMinusOneIsInvalid
    {
        private ReaderHandle() : base(true) { }
        protected override bool ReleaseHandle() { Native.shmcast_reader_close(handle); return true; }
    }

    /// <summary>
    /// A lease lives inside its subscriber, so it holds a reference on the
    /// subscriber's handle: the subscriber is closed only after the lease is
    /// released, whatever order Dispose or the finalizers run in.
    /// </summary>
    internal sealed class LeaseHandle : SafeHandle
    {
        private readonly SubscriberHandle owner;
        private bool ownerReferenced;
        // Set once the native lease is ended, so that it is ended once: the
        // subscriber's next lease comes back in the same native handle, and a
        // second release would end that one.
        private int released;

        internal LeaseHandle(SubscriberHandle owner) : base(IntPtr.Zero, true)
        {
            this.owner = owner;
            owner.DangerousAddRef(ref ownerReferenced);
        }

        // Never "invalid": ReleaseHandle must run even when no lease was
        // taken (a failed LeaseLatest), to drop the reference on the owner.
        public override bool IsInvalid { get { return false; } }

        internal void Set(IntPtr lease) { SetHandle(lease); }

        /// <summary>
        /// Releases the lease once; the status says whether it was revoked
        /// (NotHeld if it was already released). Throws ObjectDisposedException
        /// once the handle is closed.
        /// </summary>
        internal int Release()
        {
            bool added = false;
            try
            {
                DangerousAddRef(ref added);
                if (System.Threading.Interlocked.Exchange(ref released, 1) != 0) return (int)Status.NotHeld;
                return Native.shmcast_lease_release(handle);
            }
            finally
            {
                if (added) DangerousRelease();
            }
        }

        protected override bool ReleaseHandle()
        {
            if (handle != IntPtr.Zero && System.Threading.Interlocked.Exchange(ref released, 1) == 0)
                Native.shmcast_lease_release(handle);
            if (ownerReferenced) owner.DangerousRelease();
            return true;
        }
    }
}
