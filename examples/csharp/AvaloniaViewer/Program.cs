// A live view of a shmcast channel in an Avalonia window, through the
// service's restarts. Frames are copied on the UI thread into a
// WriteableBitmap in Bgra8888 (publish `--format bgra` to skip the
// conversion), and an Image shows it.
//
//   dotnet run -- NAME
using System;
using System.Threading;
using Avalonia;
using Avalonia.Controls;
using Avalonia.Media;
using Avalonia.Media.Imaging;
using Avalonia.Platform;
using Avalonia.Threading;
using Shmcast; // FrameFormat, not PixelFormat: no clash with Avalonia.Platform

sealed class App : Application
{
    public override void Initialize() { Styles.Add(new Avalonia.Themes.Fluent.FluentTheme()); }

    public override void OnFrameworkInitializationCompleted()
    {
        if (ApplicationLifetime is Avalonia.Controls.ApplicationLifetimes.IClassicDesktopStyleApplicationLifetime desktop)
            desktop.MainWindow = new Viewer(Program.Channel);
        base.OnFrameworkInitializationCompleted();
    }
}

sealed class Viewer : Window
{
    private readonly Image image = new Image { Stretch = Stretch.Uniform };
    private readonly FrameReader reader;
    private WriteableBitmap bitmap;
    private ChannelHealth health = ChannelHealth.Missing;
    private ulong frameNumber;

    public Viewer(string name)
    {
        Width = 960; Height = 540;
        Content = image;
        Title = $"shmcast: {name}  missing";
        // Events on the UI thread: Avalonia installs its SynchronizationContext
        // on the UI thread before the window is built.
        reader = new FrameReader(name, context: SynchronizationContext.Current);
        reader.HealthChanged += (s, e) => { health = e.Health; UpdateTitle(name); };
        reader.FrameArrived += (s, e) => { Show(e.Frame); UpdateTitle(name); };
        reader.Start();
        Closed += (s, e) => reader.Dispose();
    }

    private void UpdateTitle(string name)
    {
        Title = $"shmcast: {name}  frame {frameNumber}  {health.ToString().ToLowerInvariant()}";
    }

    private unsafe void Show(ReaderFrame frame)
    {
        int w = (int)frame.Width, h = (int)frame.Height, stride = (int)frame.Stride;
        int bpp = frame.Format == FrameFormat.Bgra || frame.Format == FrameFormat.Rgba ? 4
                : frame.Format == FrameFormat.Rgb24 || frame.Format == FrameFormat.Bgr24 ? 3 : 0;
        var data = frame.Data;
        // The metadata comes from another process: check it fits the bytes.
        if (bpp == 0 || w <= 0 || h <= 0 || stride < w * bpp || (long)stride * (h - 1) + (long)w * bpp > data.Length) return;
        if (bitmap == null || bitmap.PixelSize.Width != w || bitmap.PixelSize.Height != h)
        {
            bitmap = new WriteableBitmap(new PixelSize(w, h), new Vector(96, 96), PixelFormat.Bgra8888, AlphaFormat.Opaque);
            image.Source = bitmap;
        }
        using (var locked = bitmap.Lock())
        {
            for (int y = 0; y < h; y++)
            {
                var row = data.Slice(y * stride, w * bpp);
                byte* dst = (byte*)locked.Address + (long)y * locked.RowBytes;
                for (int x = 0; x < w; x++, dst += 4)
                {
                    var p = row.Slice(x * bpp, bpp);
                    bool rgbOrder = frame.Format == FrameFormat.Rgb24 || frame.Format == FrameFormat.Rgba;
                    dst[0] = rgbOrder ? p[2] : p[0];
                    dst[1] = p[1];
                    dst[2] = rgbOrder ? p[0] : p[2];
                    dst[3] = 255;
                }
            }
        }
        // A frame whose lease was revoked while copied may be torn: the next replaces it.
        frame.Release();
        frameNumber = frame.FrameNumber;
        image.InvalidateVisual();
    }
}

static class Program
{
    public static string Channel = "demo";

    [STAThread]
    public static void Main(string[] args)
    {
        if (args.Length > 0) Channel = args[0];
        AppBuilder.Configure<App>().UsePlatformDetect().StartWithClassicDesktopLifetime(args);
    }
}
