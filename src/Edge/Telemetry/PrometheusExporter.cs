using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Runtime.InteropServices;
using System.Text;

namespace MProxy.Edge.Telemetry;

/// <summary>
/// Renders the instruments of one <see cref="Meter"/> in the Prometheus text exposition format
/// (version 0.0.4), for <c>GET /metrics</c>. A <see cref="MeterListener"/> aggregates the pushed
/// instruments (histograms and counters, cumulative since start, per label set) and, at each scrape,
/// collects the observable ones (which read the components' own statistics).
/// </summary>
/// <remarks>
/// Only instruments of the given meter instance are listened to, so several edges in one process
/// (tests) do not mix. Recording does not allocate once a label set has been seen.
/// </remarks>
internal sealed class PrometheusExporter : IDisposable
{
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    private readonly Meter _meter;
    private readonly MeterListener _listener = new();
    private readonly Lock _scrapeLock = new();
    private readonly List<Family> _families = [];

    /// <summary>The runtime's own meter (.NET 9+): GC, allocations, CPU time, thread pool, locks.</summary>
    public const string RuntimeMeterName = "System.Runtime";

    /// <param name="meter">The edge's meter.</param>
    /// <param name="includeRuntime">
    /// Also export the runtime's <c>System.Runtime</c> instruments (<c>dotnet_gc_*</c>,
    /// <c>dotnet_process_cpu_time_seconds_total</c>, <c>dotnet_thread_pool_*</c>...): what an operator
    /// needs to tell a proxy that is slow from one that is collecting garbage or short of threads.
    /// </param>
    public PrometheusExporter(Meter meter, bool includeRuntime = false)
    {
        _meter = meter;
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (!ReferenceEquals(instrument.Meter, _meter) && !(includeRuntime && instrument.Meter.Name == RuntimeMeterName))
                return;
            var family = Family.Create(instrument);
            if (family is null)
                return;
            lock (_families)
                _families.Add(family);
            listener.EnableMeasurementEvents(instrument, family);
        };
        _listener.MeasurementsCompleted = (instrument, state) =>
        {
            if (state is Family family)
                lock (_families)
                    _families.Remove(family);
        };
        _listener.SetMeasurementEventCallback<long>(static (_, value, tags, state) => ((Family)state!).Record(value, tags, integer: true));
        _listener.SetMeasurementEventCallback<int>(static (_, value, tags, state) => ((Family)state!).Record(value, tags, integer: true));
        _listener.SetMeasurementEventCallback<double>(static (_, value, tags, state) => ((Family)state!).Record(value, tags, integer: false));
        _listener.Start();
    }

    /// <summary>One scrape: collects the observable instruments, then writes every family.</summary>
    public string Scrape()
    {
        lock (_scrapeLock)
        {
            Family[] families;
            lock (_families)
                families = [.. _families];
            foreach (var family in families)
                family.BeginScrape();
            _listener.RecordObservableInstruments();
            var text = new StringBuilder(16 * 1024);
            foreach (var family in families)
                family.Write(text);
            return text.ToString();
        }
    }

    public void Dispose() => _listener.Dispose();

    /// <summary>One instrument as one metric family.</summary>
    private abstract class Family(string name, string type, string help)
    {
        public string Name { get; } = name;

        public static Family? Create(Instrument instrument)
        {
            var help = instrument.Description ?? "";
            var isCounter = instrument is Counter<long> or Counter<int> or Counter<double>
                || instrument.GetType().IsGenericType && instrument.GetType().GetGenericTypeDefinition() == typeof(ObservableCounter<>);
            var name = PrometheusText.MetricName(instrument.Name, instrument.Unit, isCounter);
            if (instrument is Histogram<double> histogram)
                return new HistogramFamily(name, help, histogram.Advice?.HistogramBucketBoundaries ?? EdgeTelemetry.DurationBuckets);
            if (instrument.IsObservable)
                return new ObservedFamily(name, isCounter ? "counter" : "gauge", help);
            return new SumFamily(name, isCounter ? "counter" : "gauge", help);
        }

        public virtual void BeginScrape()
        {
        }

        public abstract void Record(double value, ReadOnlySpan<KeyValuePair<string, object?>> tags, bool integer);

        public void Write(StringBuilder text)
        {
            var header = false;
            WriteSamples(text, ref header, type, help);
        }

        protected void WriteHeader(StringBuilder text, ref bool header)
        {
            if (header)
                return;
            header = true;
            text.Append("# HELP ").Append(Name).Append(' ');
            PrometheusText.AppendHelp(text, help);
            text.Append('\n');
            text.Append("# TYPE ").Append(Name).Append(' ').Append(type).Append('\n');
        }

        protected abstract void WriteSamples(StringBuilder text, ref bool header, string type, string help);
    }

    /// <summary>Observable instruments: the measurements of the current scrape.</summary>
    private sealed class ObservedFamily(string name, string type, string help) : Family(name, type, help)
    {
        private readonly List<(double Value, bool Integer, KeyValuePair<string, string>[] Labels)> _observed = [];

        public override void BeginScrape() => _observed.Clear();

        public override void Record(double value, ReadOnlySpan<KeyValuePair<string, object?>> tags, bool integer) =>
            _observed.Add((value, integer, LabelSet.Copy(tags)));

        protected override void WriteSamples(StringBuilder text, ref bool header, string type, string help)
        {
            // Two measurements with the same labels (a callback that yields duplicates) keep the last.
            var seen = new Dictionary<string, int>(StringComparer.Ordinal);
            var lines = new List<string>(_observed.Count);
            foreach (var (value, integer, labels) in _observed)
            {
                var line = new StringBuilder();
                line.Append(Name);
                PrometheusText.AppendLabels(line, labels, null, null);
                var key = line.ToString();
                line.Append(' ');
                PrometheusText.AppendValue(line, value, integer);
                if (seen.TryGetValue(key, out var index))
                {
                    lines[index] = line.ToString();
                }
                else
                {
                    seen[key] = lines.Count;
                    lines.Add(line.ToString());
                }
            }
            if (lines.Count == 0)
                return;
            WriteHeader(text, ref header);
            foreach (var line in lines)
                text.Append(line).Append('\n');
        }
    }

    /// <summary>Pushed counters: a running sum per label set.</summary>
    private sealed class SumFamily(string name, string type, string help) : Family(name, type, help)
    {
        private readonly ConcurrentDictionary<LabelKey, SumSeries> _series = new();

        public override void Record(double value, ReadOnlySpan<KeyValuePair<string, object?>> tags, bool integer)
        {
            var key = new LabelKey(tags);
            if (!_series.TryGetValue(key, out var series))
                series = _series.GetOrAdd(key, new SumSeries(LabelSet.Copy(tags), integer));
            series.Add(value);
        }

        protected override void WriteSamples(StringBuilder text, ref bool header, string type, string help)
        {
            foreach (var (_, series) in _series)
            {
                WriteHeader(text, ref header);
                text.Append(Name);
                PrometheusText.AppendLabels(text, series.Labels, null, null);
                text.Append(' ');
                PrometheusText.AppendValue(text, series.Value, series.Integer);
                text.Append('\n');
            }
        }
    }

    private sealed class SumSeries(KeyValuePair<string, string>[] labels, bool integer)
    {
        private readonly Lock _lock = new();
        private double _value;

        public KeyValuePair<string, string>[] Labels { get; } = labels;

        public bool Integer { get; } = integer;

        public double Value
        {
            get
            {
                lock (_lock)
                    return _value;
            }
        }

        public void Add(double value)
        {
            lock (_lock)
                _value += value;
        }
    }

    /// <summary>Pushed histograms: bucket counts, sum and count per label set.</summary>
    private sealed class HistogramFamily(string name, string help, IReadOnlyList<double> bounds) : Family(name, "histogram", help)
    {
        private readonly double[] _bounds = [.. bounds];
        private readonly ConcurrentDictionary<LabelKey, HistogramSeries> _series = new();

        public override void Record(double value, ReadOnlySpan<KeyValuePair<string, object?>> tags, bool integer)
        {
            var key = new LabelKey(tags);
            if (!_series.TryGetValue(key, out var series))
                series = _series.GetOrAdd(key, new HistogramSeries(LabelSet.Copy(tags), _bounds.Length));
            // le semantics: the first bucket whose bound is >= value (latencies sit in the first few).
            var index = 0;
            while (index < _bounds.Length && value > _bounds[index])
                index++;
            series.Add(index, value);
        }

        protected override void WriteSamples(StringBuilder text, ref bool header, string type, string help)
        {
            var counts = new long[_bounds.Length + 1];
            foreach (var (_, series) in _series)
            {
                WriteHeader(text, ref header);
                var (sum, count) = series.CopyTo(counts);
                long cumulative = 0;
                for (var i = 0; i <= _bounds.Length; i++)
                {
                    cumulative += counts[i];
                    text.Append(Name).Append("_bucket");
                    PrometheusText.AppendLabels(text, series.Labels, "le", i < _bounds.Length ? PrometheusText.FormatDouble(_bounds[i]) : "+Inf");
                    text.Append(' ').Append(cumulative).Append('\n');
                }
                text.Append(Name).Append("_sum");
                PrometheusText.AppendLabels(text, series.Labels, null, null);
                text.Append(' ');
                PrometheusText.AppendValue(text, sum, integer: false);
                text.Append('\n');
                text.Append(Name).Append("_count");
                PrometheusText.AppendLabels(text, series.Labels, null, null);
                text.Append(' ').Append(count).Append('\n');
            }
        }
    }

    /// <summary>
    /// One label set's bucket counts and sum, striped per processor (<see cref="StripedCounters"/>):
    /// every request unit records here from whichever loop completes it. The count is the buckets'
    /// total, so a scrape's <c>_count</c> always equals its <c>+Inf</c> bucket.
    /// </summary>
    private sealed class HistogramSeries(KeyValuePair<string, string>[] labels, int bounds)
    {
        // Slots 0..bounds: the buckets (the last one above every bound); then the sum.
        private readonly StripedCounters _counters = new(bounds + 2);
        private readonly int _sumSlot = bounds + 1;

        public KeyValuePair<string, string>[] Labels { get; } = labels;

        public void Add(int bucket, double value)
        {
            _counters.Increment(bucket);
            _counters.AddDouble(_sumSlot, value);
        }

        public (double Sum, long Count) CopyTo(long[] counts)
        {
            long count = 0;
            for (var i = 0; i < counts.Length; i++)
                count += counts[i] = _counters.Read(i);
            return (_counters.ReadDouble(_sumSlot), count);
        }
    }

    private static class LabelSet
    {
        public static KeyValuePair<string, string>[] Copy(ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            var labels = new KeyValuePair<string, string>[tags.Length];
            for (var i = 0; i < tags.Length; i++)
                labels[i] = new(tags[i].Key, tags[i].Value?.ToString() ?? "");
            return labels;
        }
    }

    /// <summary>
    /// The label values of a measurement as a dictionary key, without allocating: up to four
    /// string values inline (the keys are the instrument's, in the order the code passes them).
    /// </summary>
    private readonly struct LabelKey : IEquatable<LabelKey>
    {
        private readonly int _count;
        private readonly string? _a;
        private readonly string? _b;
        private readonly string? _c;
        private readonly string? _d;

        public LabelKey(ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            _count = tags.Length;
            if (tags.Length > 4)
            {
                // Not used by the edge's instruments; correct, if not allocation-free.
                var joined = new StringBuilder();
                foreach (var tag in tags)
                    joined.Append(tag.Key).Append('\u0001').Append(tag.Value).Append('\u0002');
                _a = joined.ToString();
                return;
            }
            _a = tags.Length > 0 ? Value(tags[0]) : null;
            _b = tags.Length > 1 ? Value(tags[1]) : null;
            _c = tags.Length > 2 ? Value(tags[2]) : null;
            _d = tags.Length > 3 ? Value(tags[3]) : null;
        }

        private static string? Value(in KeyValuePair<string, object?> tag) => tag.Value as string ?? tag.Value?.ToString();

        public bool Equals(LabelKey other) =>
            _count == other._count && string.Equals(_a, other._a, StringComparison.Ordinal) && string.Equals(_b, other._b, StringComparison.Ordinal)
            && string.Equals(_c, other._c, StringComparison.Ordinal) && string.Equals(_d, other._d, StringComparison.Ordinal);

        public override bool Equals(object? obj) => obj is LabelKey other && Equals(other);

        /// <summary>
        /// A value hash of the label strings that is cheaper than the runtime's randomized one
        /// (a third of a request unit's recording cost, bench/StatementPath): the values are the
        /// edge's own label sets — configured databases and tenants, type and destination names,
        /// the top fingerprints — not strings a client picks, so there is nothing to flood.
        /// </summary>
        public override int GetHashCode()
        {
            var hash = (ulong)_count;
            hash = Mix(hash, _a);
            hash = Mix(hash, _b);
            hash = Mix(hash, _c);
            hash = Mix(hash, _d);
            return (int)(hash ^ (hash >> 32));
        }

        private static ulong Mix(ulong hash, string? value)
        {
            const ulong Multiplier = 0x9E3779B97F4A7C15;
            if (value is null)
                return hash * Multiplier;
            var bytes = MemoryMarshal.AsBytes(value.AsSpan());
            hash = (hash ^ (ulong)bytes.Length) * Multiplier;
            while (bytes.Length >= 8)
            {
                hash = (hash ^ BinaryPrimitives.ReadUInt64LittleEndian(bytes)) * Multiplier;
                hash ^= hash >> 29;
                bytes = bytes[8..];
            }
            ulong tail = 0;
            for (var i = 0; i < bytes.Length; i++)
                tail |= (ulong)bytes[i] << (8 * i);
            hash = (hash ^ tail) * Multiplier;
            return hash ^ (hash >> 31);
        }
    }
}
