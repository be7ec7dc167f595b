// The benchmark's reader in C# (the Shmcast.Net binding over the C ABI,
// compiled by mono's mcs and run with mono), the same protocol as its Rust
// reader role (bench/src/roles.rs, shm_reader) for the frames nobody
// stamped:
//
//     mono cs_reader.exe NAME lease-meta|copy-meta
//
// prints "ready" once subscribed, reads frames until its stdin is closed
// (waiting in TryWaitForFrame between them; leasing, it reads one 8-byte
// word of every 64-byte cache line of each frame, as the C and Python
// readers do), then prints one JSON line: frames, secs, cpu, and the
// latencies from a frame's timestamp (its publish time, on the wall clock)
// to the read.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;
using Shmcast;

static class CsReader
{
    static readonly DateTime Epoch = new DateTime(1970, 1, 1, 0, 0, 0, DateTimeKind.Utc);

    static ulong NowNs()
    {
        return (ulong)(DateTime.UtcNow - Epoch).Ticks * 100;
    }

    static int Main(string[] args)
    {
        if (args.Length != 2 || !(args[1] == "lease-meta" || args[1] == "copy-meta"))
        {
            Console.Error.WriteLine("usage: cs_reader.exe NAME lease-meta|copy-meta");
            return 2;
        }
        bool lease = args[1] == "lease-meta";
        var sub = Subscriber.Open(args[0], SubscriberAccess.Leasing, TimeSpan.FromSeconds(30));
        int stop = 0;
        var watch = new Thread(() => { Console.In.ReadToEnd(); Interlocked.Exchange(ref stop, 1); });
        watch.IsBackground = true;
        watch.Start();
        Console.Out.WriteLine("ready");
        Console.Out.Flush();
        var lat = new List<ulong>();
        var buffer = new byte[sub.MaxFrameLength];
        ulong frames = 0, first = 0, lastAt = 0, sink = 0;
        ulong last = sub.LatestFrameNumber;
        while (Volatile.Read(ref stop) == 0)
        {
            if (!sub.TryWaitForFrame(last, TimeSpan.FromMilliseconds(50), out last)) continue;
            ulong sent;
            if (lease)
            {
                FrameLease held;
                if (!sub.TryLeaseLatest(out held)) continue;
                using (held)
                {
                    var words = MemoryMarshal.Cast<byte, ulong>(held.Data);
                    for (int i = 0; i < words.Length; i += 8) sink ^= words[i];
                    sent = held.TimestampNs;
                }
            }
            else
            {
                sent = sub.ReadLatest(buffer).TimestampNs;
            }
            ulong now = NowNs();
            if (lat.Count < 200000) lat.Add(now > sent ? now - sent : 0);
            frames++;
            if (first == 0) first = now;
            lastAt = now;
        }
        double cpu = Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds;
        double secs = first == 0 ? 0.0 : (lastAt - first) / 1e9;
        var json = new StringBuilder();
        json.Append("{\"frames\": ").Append(frames == 0 ? 0 : frames - 1)
            .Append(", \"secs\": ").Append(secs.ToString("R", System.Globalization.CultureInfo.InvariantCulture))
            .Append(", \"cpu\": ").Append(cpu.ToString("R", System.Globalization.CultureInfo.InvariantCulture))
            .Append(", \"sink\": ").Append(sink)
            .Append(", \"lat\": [");
        for (int i = 0; i < lat.Count; i++)
        {
            if (i > 0) json.Append(',');
            json.Append(lat[i]);
        }
        json.Append("]}");
        Console.Out.WriteLine(json.ToString());
        Console.Out.Flush();
        sub.Dispose();
        return 0;
    }
}
