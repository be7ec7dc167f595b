// Tests of the C# binding, run by bindings/csharp/test with real processes:
//
//   ShmcastTests.exe read copy|lease NAME FRAMEMD5_FILE
//       reads frames that `shmcast publish` (fed by ffmpeg) publishes in
//       another process until the publisher is gone; every frame's md5 must
//       equal ffmpeg's own framemd5 of the same frame.
//   ShmcastTests.exe chaos-events|chaos-frames NAME --md5
//       a FrameReader, through FrameArrived/HealthChanged or Frames(token),
//       for the readers' chaos test (crates/shmcast-cli/tests/readers.rs):
//       prints "frame N MD5" and "health WORD" lines until its input ends.
//   ShmcastTests.exe checks NAME
//       the binding's own behaviour, in one process: exceptions, leases
//       after Dispose, a wait that uses no CPU, a wait and a lease on two
//       threads, loans, regions.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Security.Cryptography;
using System.Threading;
using Shmcast;

static class ShmcastTests
{
    static int failures;

    static void Check(bool ok, string what)
    {
        Console.WriteLine((ok ? "ok   " : "FAIL ") + what);
        if (!ok) failures++;
    }

    static void Throws<T>(Action action, string what, Func<T, bool> about = null) where T : Exception
    {
        try
        {
            action();
            Check(false, what + " (nothing thrown)");
        }
        catch (T e)
        {
            Check(about == null || about(e), what + ": " + e.GetType().Name + ": " + e.Message.Replace("\n", " "));
        }
        catch (Exception e)
        {
            Check(false, what + " (threw " + e.GetType().Name + ": " + e.Message + ")");
        }
    }

    static string Md5(ReadOnlySpan<byte> data)
    {
        using (var md5 = MD5.Create())
        {
            var hash = md5.ComputeHash(data.ToArray());
            return BitConverter.ToString(hash).Replace("-", "").ToLowerInvariant();
        }
    }

    static int Main(string[] args)
    {
        try
        {
            if (args.Length == 4 && args[0] == "read") return Read(args[1] == "lease", args[2], args[3]);
            if (args.Length == 2 && args[0] == "checks") return Checks(args[1]);
            if (args.Length >= 2 && args[0] == "chaos-events") return ChaosEvents(args[1]);
            if (args.Length >= 2 && args[0] == "chaos-frames") return ChaosFrames(args[1]);
        }
        catch (Exception e)
        {
            Console.WriteLine("FAIL " + e);
            return 1;
        }
        Console.Error.WriteLine("usage: ShmcastTests.exe read copy|lease NAME FRAMEMD5 | checks NAME");
        return 2;
    }

    static string Word(ChannelHealth h) { return h.ToString().ToLowerInvariant(); }

    /// <summary>A token cancelled when standard input ends (or a line is entered).</summary>
    static CancellationToken UntilInputEnds()
    {
        var stop = new CancellationTokenSource();
        new Thread(() => { Console.In.ReadLine(); stop.Cancel(); }) { IsBackground = true }.Start();
        return stop.Token;
    }

    static int ChaosEvents(string name)
    {
        var token = UntilInputEnds();
        using (var reader = new FrameReader(name))
        {
            reader.HealthChanged += (s, e) => Console.WriteLine("health " + Word(e.Health));
            reader.FrameArrived += (s, e) =>
            {
                var md5 = Md5(e.Frame.Data);
                ulong number = e.Frame.FrameNumber;
                if (e.Frame.Release()) Console.WriteLine("frame " + number + " " + md5);
            };
            reader.Start();
            token.WaitHandle.WaitOne();
        }
        Console.WriteLine("done");
        return 0;
    }

    static int ChaosFrames(string name)
    {
        var token = UntilInputEnds();
        using (var reader = new FrameReader(name))
        {
            // Frames() gives frames only; health is the reader's, read here
            // between frames and by a watcher while none come.
            var said = ChannelHealth.Missing;
            var gate = new object();
            Action sayHealth = () => { lock (gate) { var h = reader.Health; if (h != said) { said = h; Console.WriteLine("health " + Word(h)); } } };
            var watcher = new Timer(_ => sayHealth(), null, 50, 50);
            foreach (var frame in reader.Frames(token))
            {
                var md5 = Md5(frame.Data);
                ulong number = frame.FrameNumber;
                bool whole = frame.Release();
                sayHealth();
                if (whole) lock (gate) Console.WriteLine("frame " + number + " " + md5);
            }
            watcher.Dispose();
        }
        Console.WriteLine("done");
        return 0;
    }

    static int Read(bool lease, string name, string reference)
    {
        var expected = new List<string>();
        foreach (var line in File.ReadAllLines(reference))
            if (!line.StartsWith("#")) expected.Add(line.Substring(line.LastIndexOf(',') + 1).Trim());
        using (var sub = Subscriber.Open(name, lease ? SubscriberAccess.Leasing : SubscriberAccess.ReadOnly, TimeSpan.FromSeconds(30)))
        {
            var buffer = new byte[sub.MaxFrameLength];
            ulong seen = 0;
            int checkedFrames = 0, wrong = 0;
            while (true)
            {
                ulong newest;
                if (!sub.TryWaitForFrame(seen, TimeSpan.FromSeconds(1), out newest))
                {
                    if (sub.Health == ChannelHealth.Gone || seen >= (ulong)expected.Count) break;
                    continue;
                }
                FrameInfo info;
                string md5;
                if (lease)
                {
                    using (var frame = sub.LeaseLatest())
                    {
                        info = frame.Info;
                        md5 = Md5(frame.Data);
                    }
                }
                else
                {
                    info = sub.ReadLatest(buffer);
                    md5 = Md5(new ReadOnlySpan<byte>(buffer, 0, info.Length));
                }
                if (info.Number <= seen) { Console.WriteLine("FAIL frame " + info.Number + " after " + seen); return 1; }
                seen = info.Number;
                int index = (int)info.Number - 1;
                if (index >= expected.Count || expected[index] != md5 || info.Format != FrameFormat.Rgb24)
                {
                    Console.WriteLine("FAIL frame " + info.Number + ": md5 " + md5 + ", ffmpeg's "
                        + (index < expected.Count ? expected[index] : "(none)") + ", " + info);
                    wrong++;
                }
                checkedFrames++;
            }
            Console.WriteLine($"{(lease ? "lease" : "copy")}: {checkedFrames} of {expected.Count} frames checked against ffmpeg's framemd5, {wrong} wrong, the last {seen}");
            return wrong == 0 && checkedFrames >= expected.Count / 2 && seen == (ulong)expected.Count ? 0 : 1;
        }
    }

    // Per-frame metadata through every way to write and read it.
    static void Metadata(string name)
    {
        var meta = new FrameMeta(2, 2, FrameFormat.Gray8);
        var config = new ChannelConfig { MaxFrameLength = 4, MaxMetadataLength = 16 };
        using (var publisher = Publisher.Create(name, config))
        using (var copier = Subscriber.Open(name))
        using (var leaser = Subscriber.Open(name, SubscriberAccess.Leasing))
        using (var reader = new FrameReader(name))
        {
            publisher.Publish(meta, new byte[] { 1, 2, 3, 4 }, System.Text.Encoding.ASCII.GetBytes("gain=3"));
            byte[] got;
            var info = copier.ReadLatest(new byte[4], out got);
            Check(System.Text.Encoding.ASCII.GetString(got) == "gain=3" && info.MetadataLength == 6,
                "metadata by Publish and ReadLatest: \"" + System.Text.Encoding.ASCII.GetString(got) + "\"");
            ReaderFrame frame;
            Check(reader.TryNext(TimeSpan.FromSeconds(5), out frame) && frame.Metadata.SequenceEqual(got),
                "a FrameReader's frame has its Metadata");
            frame.Release();
            var slot = publisher.Loan(4);
            slot.Fill(9);
            publisher.Commit(meta, new byte[] { 7, 7, 7 });
            using (var lease = leaser.LeaseLatest())
            {
                Check(lease.Metadata.Length == 3 && lease.Metadata[0] == 7 && lease.Data[0] == 9,
                    "a lease's Metadata is its frame's (by Commit)");
                lease.Release();
            }
            publisher.Publish(meta, new byte[4]);
            copier.ReadLatest(new byte[4], out got);
            Check(got.Length == 0, "a frame without metadata has none");
            Throws<ShmcastException>(() => publisher.Publish(meta, new byte[4], new byte[17]),
                "17 bytes of metadata on a channel of 16", e => e.Status == Status.TooLarge && e.Message.Contains("17 bytes"));
        }
    }

    static int Checks(string name)
    {
        Console.WriteLine("shmcast " + Library.Version);

        // A missing name: a typed exception that names it.
        string missing = name + "-missing";
        Throws<ShmcastNotFoundException>(() => Subscriber.Open(missing), "opening a missing channel",
            e => e.Message.Contains(missing) && e.Status == Status.NotFound);
        Throws<ShmcastTimeoutException>(() => Subscriber.Open(missing, timeout: TimeSpan.FromMilliseconds(50)),
            "waiting 50 ms for a missing channel");
        Throws<ShmcastArgumentException>(() => Subscriber.Open("bad/name"), "a name with a slash");
        Throws<ArgumentNullException>(() => Subscriber.Open(null), "a null name");
        Throws<ArgumentException>(() => Subscriber.Open(name + "\0x"), "a name with a NUL in it");

        Metadata(name + "-meta");

        var meta = new FrameMeta(4, 2, FrameFormat.Bgra);
        using (var publisher = Publisher.Create(name, 4 * 2 * 4))
        {
            Throws<ShmcastWriterAliveException>(() => Publisher.Create(name, 32), "a second publisher");
            using (var reader = Subscriber.Open(name))
            using (var leaser = Subscriber.Open(name, SubscriberAccess.Leasing))
            {
                Throws<ShmcastNoFrameException>(() => reader.ReadLatest(new byte[32]), "reading before the first frame");
                Check(reader.Health == ChannelHealth.Stalled || reader.Health == ChannelHealth.Live, "health before a frame: " + reader.Health);

                // A loan, filled in place.
                var slot = publisher.Loan(32);
                for (int i = 0; i < slot.Length; i++) slot[i] = (byte)i;
                ulong first = publisher.Commit(meta);
                Check(first == 1, "a committed loan is frame 1");
                Throws<ShmcastException>(() => publisher.Commit(meta), "committing twice", e => e.Status == Status.NotHeld);

                var buffer = new byte[32];
                var info = reader.ReadLatest(buffer);
                Check(info.Number == 1 && info.Length == 32 && info.Width == 4 && info.Format == FrameFormat.Bgra
                    && buffer[31] == 31, "a copy has the frame and its metadata: " + info);
                Throws<ShmcastBufferTooSmallException>(() => reader.ReadLatest(new byte[8]), "a buffer too small",
                    e => e.Needed == 32);
                Throws<ShmcastException>(() => reader.LeaseLatest(), "leasing read-only", e => e.Status == Status.NotLeasing);

                // A lease: no copy, then unusable after Dispose.
                var lease = leaser.LeaseLatest();
                Check(lease.FrameNumber == 1 && lease.Data.Length == 32 && lease.Data[5] == 5
                    && lease.Width == 4 && lease.Height == 2 && lease.Stride == 16 && lease.Format == FrameFormat.Bgra,
                    "a lease shows the frame in place");
                Throws<ShmcastException>(() => leaser.LeaseLatest(), "a second lease at once", e => e.Status == Status.Busy);
                lease.Dispose();
                Throws<ObjectDisposedException>(() => { var n = lease.Data.Length; }, "a lease's data after Dispose");
                Throws<ObjectDisposedException>(() => { var n = lease.FrameNumber; }, "a lease's number after Dispose");
                Throws<ObjectDisposedException>(() => lease.Release(), "releasing after Dispose");
                lease.Dispose();
                using (var again = leaser.LeaseLatest()) again.Release();
                Check(true, "leasing again after a release");

                // A wait blocks in the kernel: a 2 s wait costs almost no CPU.
                var process = Process.GetCurrentProcess();
                var cpuBefore = process.TotalProcessorTime;
                var clock = Stopwatch.StartNew();
                Throws<ShmcastTimeoutException>(() => reader.WaitForFrame(first, TimeSpan.FromSeconds(2)), "a 2 s wait without frames");
                process.Refresh();
                var cpu = process.TotalProcessorTime - cpuBefore;
                Check(clock.Elapsed >= TimeSpan.FromMilliseconds(1900) && cpu < TimeSpan.FromMilliseconds(200),
                    $"the 2 s wait took {clock.Elapsed.TotalMilliseconds:F0} ms and used {cpu.TotalMilliseconds:F1} ms of CPU");

                // A GUI: one thread waits, another leases and draws meanwhile.
                ulong woke = 0;
                var waiter = new Thread(() => woke = leaser.WaitForFrame(first, TimeSpan.FromSeconds(10)));
                waiter.Start();
                Thread.Sleep(100);
                using (var drawing = leaser.LeaseLatest()) Check(drawing.FrameNumber == 1, "a lease while another thread waits");
                publisher.Publish(meta, new byte[32]);
                Check(waiter.Join(TimeSpan.FromSeconds(10)) && woke == 2, "the waiting thread woke for frame 2");

                // A lease outlives its subscriber's Dispose, in shared memory,
                // and keeps its slot while the publisher goes on.
                var kept = leaser.LeaseLatest();
                leaser.Dispose();
                var other = new byte[32];
                for (byte n = 3; n < 10; n++)
                {
                    for (int i = 0; i < other.Length; i++) other[i] = n;
                    publisher.Publish(meta, other);
                }
                GC.Collect();
                GC.WaitForPendingFinalizers();
                bool zeros = true;
                foreach (var b in kept.Data) zeros &= b == 0;
                Check(kept.Data.Length == 32 && kept.FrameNumber == 2 && zeros,
                    "a lease stays readable, and its frame whole, after its subscriber's Dispose and 7 publishes");
                kept.Release();
                Throws<ObjectDisposedException>(() => leaser.LeaseLatest(), "a disposed subscriber");
            }
            publisher.Dispose();
            Throws<ObjectDisposedException>(() => publisher.Publish(meta, new byte[32]), "a disposed publisher");
        }

        // A lease held past the channel's max lease while the publisher has
        // no other slot is revoked, and Release says so.
        using (var publisher = Publisher.Create(name + "-revoke", new ChannelConfig
               { MaxFrameLength = 8, Slots = 2, MaxLease = TimeSpan.FromMilliseconds(20) }))
        using (var leaser = Subscriber.Open(name + "-revoke", SubscriberAccess.Leasing))
        {
            var rawMeta = new FrameMeta(0, 0, FrameFormat.Raw);
            publisher.Publish(rawMeta, new byte[8]);
            var held = leaser.LeaseLatest();
            publisher.Publish(rawMeta, new byte[8]);
            int refused = 0;
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed < TimeSpan.FromSeconds(10))
            {
                try { publisher.Publish(rawMeta, new byte[8]); break; }
                catch (ShmcastException e) when (e.Status == Status.AllSlotsLeased) { refused++; Thread.Sleep(5); }
            }
            Throws<ShmcastRevokedException>(() => held.Release(), $"releasing a revoked lease (the publisher was refused {refused} times first)",
                e => e.Message.Contains("revoked"));
            Throws<ObjectDisposedException>(() => { var n = held.Data.Length; }, "a revoked lease after Release");
        }

        // Regions.
        using (var region = Region.Create(name + "-region", 64))
        using (var view = Region.Open(name + "-region", readOnly: true))
        {
            region.Write(10, new byte[] { 1, 2, 3 });
            var three = new byte[3];
            view.Read(10, three);
            Check(three[0] == 1 && three[2] == 3 && view.Size == 64, "a region write is seen by a read-only view");
            Throws<ShmcastException>(() => view.Write(0, new byte[1]), "writing a read-only view", e => e.Status == Status.ReadOnly);
            Throws<ShmcastException>(() => region.Read(60, new byte[8]), "reading past the end", e => e.Status == Status.OutOfBounds);
        }

        // Truncated to nothing while a reader waits: the wait ends with the
        // status, Health says Truncated, and the next publish is refused.
        if (Environment.OSVersion.Platform == PlatformID.Unix && System.IO.Directory.Exists("/dev/shm"))
        {
            string cut = name + "-trunc";
            using (var publisher = Publisher.Create(cut, 65536))
            using (var reader = Subscriber.Open(cut))
            {
                ulong first = publisher.Publish(new FrameMeta(8, 8, FrameFormat.Gray8), new byte[64]);
                Exception thrown = null;
                var waiter = new Thread(() =>
                {
                    try { reader.WaitForFrame(first, TimeSpan.FromSeconds(20)); }
                    catch (Exception e) { thrown = e; }
                });
                waiter.Start();
                Thread.Sleep(100);
                using (var f = new System.IO.FileStream("/dev/shm/shmcast." + cut, System.IO.FileMode.Open)) f.SetLength(0);
                Check(waiter.Join(TimeSpan.FromSeconds(10)), "a wait on a truncated channel ends");
                var e2 = thrown as ShmcastException;
                Check(e2 != null && e2.Status == Status.Truncated, "it ends with Truncated: " + thrown);
                Check(reader.Health == ChannelHealth.Truncated, "health says Truncated: " + reader.Health);
                Throws<ShmcastException>(() => publisher.Publish(new FrameMeta(8, 8, FrameFormat.Gray8), new byte[64]),
                    "publishing on a truncated channel", e => e.Status == Status.Truncated);
            }
        }

        // A FrameReader whose events go to a "UI thread" is disposed on that
        // thread, inside a handler and outside one, while frames keep coming:
        // neither may hang (the events once came through Send, and a UI
        // thread that waited for the reader's thread waited for itself).
        string ui = name + "-ui";
        using (var publisher = Publisher.Create(ui, 16))
        {
            var pump = new PumpContext();
            var stop = new CancellationTokenSource();
            var feeder = new Thread(() => { while (!stop.IsCancellationRequested) { publisher.Publish(new FrameMeta(4, 4, FrameFormat.Gray8), new byte[16]); Thread.Sleep(2); } });
            feeder.Start();
            foreach (bool inside in new[] { true, false })
            {
                var disposed = new ManualResetEventSlim();
                FrameReader reader = null;
                pump.Post(_ =>
                {
                    reader = new FrameReader(ui, context: SynchronizationContext.Current);
                    reader.FrameArrived += (o, e) =>
                    {
                        if (inside && !disposed.IsSet) { reader.Dispose(); disposed.Set(); }
                    };
                    reader.Start();
                }, null);
                if (!inside)
                {
                    Thread.Sleep(300);
                    pump.Post(_ => { reader.Dispose(); disposed.Set(); }, null);
                }
                Check(disposed.Wait(TimeSpan.FromSeconds(10)), "a FrameReader disposed on its events' thread, " + (inside ? "inside" : "outside") + " a handler, does not hang");
                var pumped = new ManualResetEventSlim();
                pump.Post(_ => pumped.Set(), null);
                Check(pumped.Wait(TimeSpan.FromSeconds(10)), "the events' thread goes on after it");
            }
            stop.Cancel();
            feeder.Join();
            pump.Stop();
        }

        Console.WriteLine(failures == 0 ? "C# binding: all checks passed" : $"C# binding: {failures} checks FAILED");
        return failures == 0 ? 0 : 1;
    }
}

/// <summary>
/// A UI thread's stand-in: one thread running what is posted to it, in
/// order. Like WPF's dispatcher, it sets a new context object for every
/// operation, so code must not tell the UI thread by its context's identity.
/// </summary>
sealed class PumpContext : SynchronizationContext
{
    private sealed class Core
    {
        public readonly System.Collections.Concurrent.BlockingCollection<Action> Queue = new System.Collections.Concurrent.BlockingCollection<Action>();
        public Thread Thread;
    }

    private readonly Core core;

    private PumpContext(Core core) { this.core = core; }

    public PumpContext()
    {
        core = new Core();
        core.Thread = new Thread(() =>
        {
            foreach (var action in core.Queue.GetConsumingEnumerable())
            {
                SetSynchronizationContext(new PumpContext(core));
                action();
            }
        }) { IsBackground = true };
        core.Thread.Start();
    }

    public override SynchronizationContext CreateCopy() { return new PumpContext(core); }

    public override void Post(SendOrPostCallback d, object state) { core.Queue.Add(() => d(state)); }

    public override void Send(SendOrPostCallback d, object state)
    {
        if (Thread.CurrentThread == core.Thread) { d(state); return; }
        var done = new ManualResetEventSlim();
        core.Queue.Add(() => { try { d(state); } finally { done.Set(); } });
        done.Wait();
    }

    public void Stop() { core.Queue.CompleteAdding(); core.Thread.Join(); }
}
