// A desktop window that shows a shmcast channel live, and keeps showing it
// through the service's restarts: start it before or after the service,
// stop, kill or restart the service; the title says what is going on.
//
//   WinFormsViewer.exe NAME
//
// The pattern to copy: a FrameReader raises its events on the UI thread
// (the form's SynchronizationContext), the handler copies the frame into a
// Bitmap it owns, and painting draws that Bitmap. The frame's bytes are
// used only inside the handler.
using System;
using System.Diagnostics;
using System.Drawing;
using System.Drawing.Drawing2D;
using System.Drawing.Imaging;
using System.Runtime.InteropServices;
using System.Threading;
using System.Windows.Forms;
using Shmcast;

sealed class Viewer : Form
{
    private readonly string name;
    private FrameReader reader;
    private Bitmap picture;
    private ulong frameNumber;
    private string problem;
    private ChannelHealth health = ChannelHealth.Missing;
    private int framesThisSecond;
    private double fps;
    private readonly Stopwatch second = Stopwatch.StartNew();

    Viewer(string name)
    {
        this.name = name;
        ClientSize = new Size(640, 480);
        DoubleBuffered = true;
        BackColor = Color.Black;
        UpdateTitle();
    }

    protected override void OnLoad(EventArgs e)
    {
        base.OnLoad(e);
        // Created here, on the UI thread, so that its events come here too.
        reader = new FrameReader(name, context: SynchronizationContext.Current);
        reader.FrameArrived += OnFrame;
        reader.HealthChanged += (s, h) => { health = h.Health; UpdateTitle(); };
        reader.Start();
    }

    protected override void OnFormClosed(FormClosedEventArgs e)
    {
        reader.Dispose();
        base.OnFormClosed(e);
    }

    private void OnFrame(object sender, FrameArrivedEventArgs e)
    {
        var frame = e.Frame;
        var copy = ToBitmap(frame);
        // A frame whose lease was revoked while we copied may be torn: skip it.
        if (!frame.Release()) { if (copy != null) copy.Dispose(); return; }
        if (copy == null)
        {
            problem = "cannot show " + frame.Format;
        }
        else
        {
            problem = null;
            if (picture != null) picture.Dispose();
            picture = copy;
            frameNumber = frame.FrameNumber;
            Invalidate();
        }
        framesThisSecond++;
        UpdateTitle();
    }

    /// <summary>The frame as a Bitmap of its own (null for formats this example does not convert).</summary>
    private static unsafe Bitmap ToBitmap(ReaderFrame frame)
    {
        int w = (int)frame.Width, h = (int)frame.Height, stride = (int)frame.Stride;
        int bytesPerPixel;
        switch (frame.Format)
        {
            case FrameFormat.Rgb24: case FrameFormat.Bgr24: bytesPerPixel = 3; break;
            case FrameFormat.Rgba: case FrameFormat.Bgra: bytesPerPixel = 4; break;
            case FrameFormat.Gray8: bytesPerPixel = 1; break;
            default: return null;
        }
        var data = frame.Data;
        // The metadata comes from another process: check it fits the bytes.
        if (w <= 0 || h <= 0 || stride < w * bytesPerPixel || (long)stride * (h - 1) + (long)w * bytesPerPixel > data.Length)
            return null;
        var bitmap = new Bitmap(w, h, System.Drawing.Imaging.PixelFormat.Format32bppRgb);
        var locked = bitmap.LockBits(new Rectangle(0, 0, w, h), ImageLockMode.WriteOnly, bitmap.PixelFormat);
        try
        {
            for (int y = 0; y < h; y++)
            {
                var row = data.Slice(y * stride, w * bytesPerPixel);
                byte* dst = (byte*)locked.Scan0 + (long)y * locked.Stride;
                for (int x = 0; x < w; x++, dst += 4)
                {
                    byte r, g, b;
                    switch (frame.Format)
                    {
                        case FrameFormat.Rgb24: r = row[x * 3]; g = row[x * 3 + 1]; b = row[x * 3 + 2]; break;
                        case FrameFormat.Bgr24: b = row[x * 3]; g = row[x * 3 + 1]; r = row[x * 3 + 2]; break;
                        case FrameFormat.Rgba: r = row[x * 4]; g = row[x * 4 + 1]; b = row[x * 4 + 2]; break;
                        case FrameFormat.Bgra: b = row[x * 4]; g = row[x * 4 + 1]; r = row[x * 4 + 2]; break;
                        default: r = g = b = row[x]; break;
                    }
                    dst[0] = b; dst[1] = g; dst[2] = r; dst[3] = 255;
                }
            }
        }
        finally
        {
            bitmap.UnlockBits(locked);
        }
        return bitmap;
    }

    private void UpdateTitle()
    {
        if (second.Elapsed.TotalSeconds >= 1)
        {
            fps = framesThisSecond / second.Elapsed.TotalSeconds;
            framesThisSecond = 0;
            second.Restart();
        }
        string state = health.ToString().ToLowerInvariant();
        if (problem != null) state += "; " + problem;
        Text = frameNumber == 0
            ? $"shmcast: {name}  {state}"
            : $"shmcast: {name}  frame {frameNumber}  {fps:0.0} fps  {state}";
    }

    protected override void OnPaint(PaintEventArgs e)
    {
        base.OnPaint(e);
        if (picture == null) return;
        // Pixels as they are (no smoothing), scaled to the window.
        e.Graphics.InterpolationMode = InterpolationMode.NearestNeighbor;
        e.Graphics.PixelOffsetMode = PixelOffsetMode.Half;
        e.Graphics.DrawImage(picture, ClientRectangle);
    }

    protected override void OnResize(EventArgs e)
    {
        base.OnResize(e);
        Invalidate();
    }

    [STAThread]
    static void Main(string[] args)
    {
        Application.EnableVisualStyles();
        Application.Run(new Viewer(args.Length > 0 ? args[0] : "demo"));
    }
}
