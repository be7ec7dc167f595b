// What scripts/dist --check runs from the unpacked NuGet package: a console
// app compiled against the package's lib/ alone, reading COUNT frames of a
// channel with a FrameReader and checking that each is whole.
//
//   NupkgCheck NAME COUNT      exit 0 when COUNT frames were read within 20 s
using System;
using Shmcast;

static class NupkgCheck
{
    static int Main(string[] args)
    {
        if (args.Length != 2)
        {
            Console.Error.WriteLine("usage: NupkgCheck NAME COUNT");
            return 2;
        }
        int want = int.Parse(args[1]);
        int got = 0;
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        using (var reader = new FrameReader(args[0]))
        {
            while (got < want && DateTime.UtcNow < deadline)
            {
                ReaderFrame frame;
                if (!reader.TryNext(TimeSpan.FromMilliseconds(500), out frame)) continue;
                long sum = 0;
                foreach (byte b in frame.Data) sum += b;
                if (!frame.Release()) continue; // overwritten while read: not a frame
                got++;
                Console.WriteLine("frame {0} {1}x{2} {3} bytes, sum {4}", frame.FrameNumber, frame.Width, frame.Height,
                                  frame.Info.Length, sum);
            }
        }
        Console.WriteLine("{0} frames on {1}", got, Environment.Version);
        return got >= want ? 0 : 1;
    }
}
