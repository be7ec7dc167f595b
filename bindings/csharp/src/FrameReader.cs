using System;
using System.Collections.Generic;
using System.Threading;

namespace Shmcast
{
    /// <summary>How a <see cref="FrameReader"/> gets its frames.</summary>
    public enum ReaderAccess
    {
        /// <summary>Lease frames in place when the publisher lets this user lease; copy them otherwise.</summary>
        Auto = 0,
        /// <summary>Lease only: a channel that refuses leasing is an error.</summary>
        Leasing = 1,
        /// <summary>Copy only: needs read access, writes nothing to shared memory.</summary>
        Copy = 2,
    }

    /// <summary>
    /// A frame from a <see cref="FrameReader"/>: leased in place or copied
    /// into the reader's buffer. Valid until the next frame is asked for (the
    /// next step of <see cref="FrameReader.Frames"/>, or the end of a
    /// <see cref="FrameReader.FrameArrived"/> handler), or until
    /// <see cref="Release"/>; after that <see cref="Data"/> throws
    /// <see cref="ObjectDisposedException"/> (the metadata stays readable).
    /// Copy what you keep.
    /// </summary>
    public sealed unsafe class ReaderFrame
    {
        private readonly ReaderHandle handle;
        private readonly FrameInfo info;
        private readonly IntPtr data;
        private bool ended;
        // The frame holds a reference on its reader's handle: a Dispose of
        // the reader on another thread closes the native reader (and frees
        // the bytes) only after this frame ends.
        private bool referenced;

        internal ReaderFrame(ReaderHandle handle, FrameInfo info, IntPtr data)
        {
            this.handle = handle; this.info = info; this.data = data;
            handle.DangerousAddRef(ref referenced);
        }

        private void CheckLive()
        {
            if (ended) throw new ObjectDisposedException(nameof(ReaderFrame), "this frame was released; the reader has moved on");
        }

        /// <summary>
        /// The frame's bytes. When leased they are shared memory under a
        /// bounded lease (see <see cref="FrameLease.Data"/>): trust what was
        /// read only if <see cref="Release"/> returns true.
        /// </summary>
        public ReadOnlySpan<byte> Data
        {
            get { CheckLive(); return new ReadOnlySpan<byte>((void*)data, info.Length); }
        }

        /// <summary>
        /// The frame's per-frame metadata (empty when it has none), read with
        /// the frame and under the same promise as <see cref="Data"/>.
        /// </summary>
        public ReadOnlySpan<byte> Metadata
        {
            get { CheckLive(); return new ReadOnlySpan<byte>((void*)info.MetadataAddress, info.MetadataLength); }
        }

        /// <summary>The frame's number and metadata (a copy: still readable after Release).</summary>
        public FrameInfo Info { get { return info; } }
        public ulong FrameNumber { get { return Info.Number; } }
        public uint Width { get { return Info.Width; } }
        public uint Height { get { return Info.Height; } }
        public uint Stride { get { return Info.Stride; } }
        public FrameFormat Format { get { return Info.Format; } }
        public ulong TimestampNs { get { return Info.TimestampNs; } }

        /// <summary>
        /// Ends the frame: true when it stayed whole, false when its lease was
        /// revoked while in use (discard what was read). Releasing twice
        /// returns true the second time.
        /// </summary>
        public bool Release()
        {
            lock (this)
            {
                if (ended) return true;
                ended = true;
                int status = Native.shmcast_reader_release_raw(handle.DangerousGetHandle());
                if (referenced) { referenced = false; handle.DangerousRelease(); }
                return status == 0 || status == (int)Status.NotHeld;
            }
        }

        internal void End() { Release(); }
    }

    /// <summary>A new frame, for <see cref="FrameReader.FrameArrived"/>.</summary>
    public sealed class FrameArrivedEventArgs : EventArgs
    {
        internal FrameArrivedEventArgs(ReaderFrame frame) { Frame = frame; }
        /// <summary>Valid only during the handler.</summary>
        public ReaderFrame Frame { get; }
    }

    /// <summary>A change of health, for <see cref="FrameReader.HealthChanged"/>.</summary>
    public sealed class HealthChangedEventArgs : EventArgs
    {
        internal HealthChangedEventArgs(ChannelHealth health) { Health = health; }
        public ChannelHealth Health { get; }
    }

    /// <summary>
    /// Reads a channel by name for as long as it is told to: it needs no
    /// channel to start (<see cref="ChannelHealth.Missing"/> until the
    /// publisher creates it), and goes on through a publisher's crash and
    /// take-over, a clean stop and a new start, and a stalled source. Two
    /// ways to use it:
    /// <list type="bullet">
    /// <item><c>foreach (var frame in reader.Frames(token))</c> on a thread of
    /// your own; it ends only when <c>token</c> is cancelled.</item>
    /// <item><see cref="Start"/>: <see cref="FrameArrived"/> and
    /// <see cref="HealthChanged"/> are raised on a background thread, or on
    /// a UI thread through the <see cref="SynchronizationContext"/> given to
    /// the constructor (<c>SynchronizationContext.Current</c> on the UI
    /// thread of WinForms, WPF or Avalonia). The reader waits while a
    /// handler runs: a frame's data is valid for the whole handler, and a
    /// slow handler costs this reader frames, never the publisher. Stop and
    /// Dispose work from any thread, a handler included; a frame still held
    /// elsewhere keeps the native reader open until it is released.</item>
    /// </list>
    /// One of the two at a time. Dispose stops it.
    /// </summary>
    public sealed unsafe class FrameReader : IDisposable
    {
        private static readonly TimeSpan Step = TimeSpan.FromMilliseconds(250);
        private readonly ReaderHandle handle;
        private readonly SynchronizationContext context;
        private readonly object gate = new object();
        private ReaderFrame current;
        private ChannelHealth health = ChannelHealth.Missing;
        private Thread thread;
        private CancellationTokenSource stop;
        private bool threadDone, closeWhenDone;

        /// <summary>
        /// A reader of channel <paramref name="name"/>. <paramref name="stallAfter"/>:
        /// how long a running publisher may publish nothing before it counts
        /// as stalled (default 2 s). <paramref name="context"/>: where the
        /// events are raised (default: the reader's own thread).
        /// </summary>
        public FrameReader(string name, ReaderAccess access = ReaderAccess.Auto, TimeSpan? stallAfter = null,
                           SynchronizationContext context = null)
        {
            uint ms = stallAfter.HasValue ? Math.Max(1u, Native.Millis(stallAfter.Value)) : 0;
            fixed (byte* n = Native.Utf8(name, nameof(name)))
                Native.Check(Native.shmcast_reader_open(n, (uint)access, ms, out handle));
            this.context = context;
            Name = name;
        }

        public string Name { get; }

        /// <summary>The channel's health as of the reader's last look.</summary>
        public ChannelHealth Health
        {
            get
            {
                int h;
                Native.Check(Native.shmcast_reader_health(handle, out h));
                return (ChannelHealth)h;
            }
        }

        /// <summary>Whether frames are leased in place (false: copied, or no channel yet).</summary>
        public bool Leases { get { return Native.shmcast_reader_leases(handle) != 0; } }

        /// <summary>Raised for every new frame (see the class remarks for the thread).</summary>
        public event EventHandler<FrameArrivedEventArgs> FrameArrived;

        /// <summary>Raised when the health changes, first when the channel is found.</summary>
        public event EventHandler<HealthChangedEventArgs> HealthChanged;

        /// <summary>
        /// The next frame newer than the last, waiting up to <paramref name="timeout"/>:
        /// false when none came (not an end: call again). The previous frame
        /// is released first. Throws only for this call's trouble (a channel
        /// that cannot be opened, a corrupt frame); the reader goes on after it.
        /// </summary>
        public bool TryNext(TimeSpan timeout, out ReaderFrame frame)
        {
            frame = null;
            lock (gate)
            {
                if (current != null) current.End();
                var info = NativeFrameInfo.New();
                IntPtr data;
                ulong len;
                int status = Native.shmcast_reader_next(handle, Native.Millis(timeout), out data, out len, ref info);
                if (status == (int)Status.Timeout) return false;
                Native.Check(status);
                current = frame = new ReaderFrame(handle, FrameInfo.From(ref info), data);
                return true;
            }
        }

        /// <summary>
        /// Every new frame until <paramref name="token"/> is cancelled; each is
        /// valid until the next is asked for. Timeouts, restarts and stalls
        /// are not ends. Errors of one step are given to <paramref name="onError"/>
        /// (default: ignored) and the frames go on.
        /// </summary>
        public IEnumerable<ReaderFrame> Frames(CancellationToken token, Action<ShmcastException> onError = null)
        {
            try
            {
                while (!token.IsCancellationRequested)
                {
                    ReaderFrame frame = null;
                    try
                    {
                        if (!TryNext(Step, out frame)) continue;
                    }
                    catch (ShmcastException e)
                    {
                        if (onError != null) onError(e);
                        continue;
                    }
                    yield return frame;
                }
            }
            finally
            {
                // Also when the caller breaks out of its foreach.
                lock (gate) { if (current != null) current.End(); }
            }
        }

        /// <summary>Raises the events from a background thread until <see cref="Stop"/> or Dispose.</summary>
        public void Start()
        {
            lock (gate)
            {
                if (thread != null) throw new InvalidOperationException("this reader is already started");
                stop = new CancellationTokenSource();
                threadDone = false;
                var token = stop.Token;
                thread = new Thread(() => Run(token)) { IsBackground = true, Name = "shmcast reader " + Name };
                thread.Start();
            }
        }

        /// <summary>
        /// Stops the background thread, and waits for it (at most a step and a
        /// handler) unless called on the thread the events are raised on: a
        /// UI thread that waited there for a handler it has to run itself
        /// would wait forever.
        /// </summary>
        public void Stop() { StopAndJoin(); }

        private bool StopAndJoin()
        {
            Thread t;
            lock (gate)
            {
                t = thread;
                thread = null;
                if (stop != null) stop.Cancel();
            }
            if (t == null) return true;
            // From inside a handler the reader's thread waits for us: no join.
            if (t == Thread.CurrentThread || handlerThread == Thread.CurrentThread) return false;
            t.Join();
            return true;
        }

        private void Run(CancellationToken token)
        {
            try
            {
                while (!token.IsCancellationRequested)
                {
                    ReaderFrame frame = null;
                    try { TryNext(Step, out frame); }
                    catch (ShmcastException) { }
                    var now = Health;
                    if (now != health)
                    {
                        health = now;
                        Raise(token, () => { var h = HealthChanged; if (h != null) h(this, new HealthChangedEventArgs(now)); });
                    }
                    if (frame != null)
                    {
                        Raise(token, () => { var h = FrameArrived; if (h != null) h(this, new FrameArrivedEventArgs(frame)); });
                        lock (gate) frame.End(); // not held while waiting for the next
                    }
                }
            }
            catch (ObjectDisposedException) { }
            finally
            {
                lock (gate)
                {
                    threadDone = true;
                    if (closeWhenDone) handle.Dispose();
                }
            }
        }

        /// <summary>
        /// Runs a handler: here, or on the context's thread. Posted, not Sent,
        /// and waited for until it ends or the reader is stopped, so that a
        /// Stop or Dispose on the UI thread never waits for a handler queued
        /// behind it on that thread; a handler that has begun is waited for
        /// (the frame is valid for all of it), unless Stop came from inside
        /// it.
        /// </summary>
        private void Raise(CancellationToken token, Action action)
        {
            if (context == null) { action(); return; }
            var done = new ManualResetEventSlim(false);
            bool abandoned = false, running = false;
            context.Post(_ =>
            {
                lock (done)
                {
                    if (abandoned || token.IsCancellationRequested) { done.Set(); return; }
                    running = true;
                    handlerThread = Thread.CurrentThread;
                }
                try { action(); }
                finally
                {
                    lock (done) { handlerThread = null; running = false; done.Set(); }
                }
            }, null);
            try { done.Wait(token); }
            catch (OperationCanceledException)
            {
                bool wait;
                lock (done) { abandoned = true; wait = running; }
                if (wait) done.Wait(); // Stop was not called from this handler (see StopAndJoin)
            }
        }

        private volatile Thread handlerThread;

        /// <summary>Stops the reader and closes it; its frame ends.</summary>
        public void Dispose()
        {
            bool joined = StopAndJoin();
            lock (gate)
            {
                // Not joined (called on the events' thread): the reader's
                // thread closes the handle when it ends.
                if (joined || threadDone) handle.Dispose();
                else closeWhenDone = true;
            }
        }
    }
}
