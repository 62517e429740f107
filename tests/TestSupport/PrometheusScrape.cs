using System.Globalization;
using System.Text;

namespace MProxy.TestSupport;

/// <summary>One sample line: a series name (with its _bucket/_sum/_count suffix), its labels and its value.</summary>
public sealed record PrometheusSample(string Name, IReadOnlyDictionary<string, string> Labels, double Value)
{
    public string? this[string label] => Labels.TryGetValue(label, out var value) ? value : null;
}

/// <summary>A metric family: TYPE, HELP and its samples.</summary>
public sealed record PrometheusFamily(string Name, string Type, string? Help, List<PrometheusSample> Samples);

/// <summary>
/// A strict parser of the Prometheus text exposition format (0.0.4), for tests: HELP and TYPE
/// lines, sample lines with escaped label values, numbers including +Inf/-Inf/NaN; a family's
/// samples must be contiguous and follow its TYPE; histograms must have cumulative buckets ending
/// in le="+Inf" equal to their _count. Any violation throws <see cref="FormatException"/> naming the line.
/// </summary>
public sealed class PrometheusScrape
{
    private static readonly string[] Types = ["counter", "gauge", "histogram", "summary", "untyped"];

    private PrometheusScrape(Dictionary<string, PrometheusFamily> families) => Families = families;

    public IReadOnlyDictionary<string, PrometheusFamily> Families { get; }

    public static PrometheusScrape Parse(string text)
    {
        var families = new Dictionary<string, PrometheusFamily>(StringComparer.Ordinal);
        var helps = new Dictionary<string, string>(StringComparer.Ordinal);
        var finished = new HashSet<string>(StringComparer.Ordinal);
        PrometheusFamily? current = null;
        var lines = text.Split('\n');
        if (text.Length > 0 && !text.EndsWith('\n'))
            throw new FormatException("the exposition does not end with a line feed");
        for (var n = 0; n < lines.Length; n++)
        {
            var line = lines[n];
            var where = $"line {n + 1} \"{line}\"";
            if (line.Length == 0)
                continue;
            if (line.StartsWith('#'))
            {
                var parts = line.Split(' ', 4);
                if (parts.Length >= 3 && parts[0] == "#" && parts[1] is "HELP" or "TYPE")
                {
                    var name = parts[2];
                    CheckMetricName(name, where);
                    if (parts[1] == "HELP")
                    {
                        if (helps.ContainsKey(name))
                            throw new FormatException($"{where}: second HELP for {name}");
                        helps[name] = parts.Length == 4 ? UnescapeHelp(parts[3], where) : "";
                        continue;
                    }
                    if (parts.Length != 4 || !Types.Contains(parts[3]))
                        throw new FormatException($"{where}: TYPE needs one of {string.Join(", ", Types)}");
                    if (families.ContainsKey(name))
                        throw new FormatException($"{where}: second TYPE for {name}");
                    if (current is not null)
                        finished.Add(current.Name);
                    current = new PrometheusFamily(name, parts[3], null, []);
                    families[name] = current;
                }
                continue;
            }
            var sample = ParseSample(line, where);
            var family = FamilyOf(sample.Name, families);
            if (family is null)
            {
                // An untyped family of its own.
                if (families.ContainsKey(sample.Name) || finished.Contains(sample.Name))
                    throw new FormatException($"{where}: samples of {sample.Name} are not contiguous");
                family = new PrometheusFamily(sample.Name, "untyped", null, []);
                families[sample.Name] = family;
                if (current is not null)
                    finished.Add(current.Name);
                current = family;
            }
            if (!ReferenceEquals(family, current))
                throw new FormatException($"{where}: sample of {family.Name} outside its family's block");
            family.Samples.Add(sample);
        }
        var result = new Dictionary<string, PrometheusFamily>(StringComparer.Ordinal);
        foreach (var (name, family) in families)
        {
            var withHelp = family with { Help = helps.GetValueOrDefault(name) };
            if (family.Type == "histogram")
                CheckHistogram(withHelp);
            result[name] = withHelp;
        }
        return new PrometheusScrape(result);
    }

    /// <summary>The family's samples whose labels include every given (name, value).</summary>
    public IEnumerable<PrometheusSample> Samples(string name, params (string Label, string Value)[] labels)
    {
        var familyName = families(name);
        if (familyName is null)
            return [];
        return Families[familyName].Samples.Where(s => s.Name == name && labels.All(l => s[l.Label] == l.Value));

        string? families(string sampleName) =>
            Families.ContainsKey(sampleName) ? sampleName
            : Families.Keys.FirstOrDefault(f => sampleName == f + "_bucket" || sampleName == f + "_sum" || sampleName == f + "_count");
    }

    /// <summary>The value of the one sample matching; throws when there is none or several.</summary>
    public double Value(string name, params (string Label, string Value)[] labels)
    {
        var matches = Samples(name, labels).ToList();
        if (matches.Count != 1)
            throw new InvalidOperationException($"{matches.Count} samples of {name} match {string.Join(", ", labels.Select(l => $"{l.Label}={l.Value}"))}");
        return matches[0].Value;
    }

    /// <summary>The sum over every sample of <paramref name="name"/> matching the labels (0 when none).</summary>
    public double Sum(string name, params (string Label, string Value)[] labels) => Samples(name, labels).Sum(s => s.Value);

    private static PrometheusFamily? FamilyOf(string sampleName, Dictionary<string, PrometheusFamily> families)
    {
        if (families.TryGetValue(sampleName, out var family))
            return family;
        foreach (var suffix in new[] { "_bucket", "_sum", "_count" })
        {
            if (sampleName.EndsWith(suffix, StringComparison.Ordinal)
                && families.TryGetValue(sampleName[..^suffix.Length], out var histogram) && histogram.Type is "histogram" or "summary")
                return histogram;
        }
        return null;
    }

    private static PrometheusSample ParseSample(string line, string where)
    {
        var i = 0;
        while (i < line.Length && line[i] is not ('{' or ' '))
            i++;
        var name = line[..i];
        CheckMetricName(name, where);
        var labels = new Dictionary<string, string>(StringComparer.Ordinal);
        if (i < line.Length && line[i] == '{')
        {
            i++;
            while (true)
            {
                if (i >= line.Length)
                    throw new FormatException($"{where}: unterminated label set");
                if (line[i] == '}')
                {
                    i++;
                    break;
                }
                var start = i;
                while (i < line.Length && line[i] != '=')
                    i++;
                var label = line[start..i];
                if (!IsLabelName(label))
                    throw new FormatException($"{where}: invalid label name '{label}'");
                if (i + 1 >= line.Length || line[i + 1] != '"')
                    throw new FormatException($"{where}: label {label} has no quoted value");
                i += 2;
                var value = new StringBuilder();
                while (true)
                {
                    if (i >= line.Length)
                        throw new FormatException($"{where}: unterminated value of label {label}");
                    var c = line[i++];
                    if (c == '"')
                        break;
                    if (c == '\\')
                    {
                        if (i >= line.Length)
                            throw new FormatException($"{where}: dangling backslash");
                        value.Append(line[i++] switch
                        {
                            '\\' => '\\',
                            '"' => '"',
                            'n' => '\n',
                            var other => throw new FormatException($"{where}: invalid escape \\{other} in a label value"),
                        });
                        continue;
                    }
                    value.Append(c);
                }
                if (!labels.TryAdd(label, value.ToString()))
                    throw new FormatException($"{where}: label {label} given twice");
                if (i < line.Length && line[i] == ',')
                    i++;
                else if (i < line.Length && line[i] != '}')
                    throw new FormatException($"{where}: expected ',' or '}}' after label {label}");
            }
        }
        if (i >= line.Length || line[i] != ' ')
            throw new FormatException($"{where}: no value");
        var fields = line[(i + 1)..].Split(' ');
        if (fields.Length is < 1 or > 2)
            throw new FormatException($"{where}: expected a value and an optional timestamp");
        var number = fields[0] switch
        {
            "+Inf" => double.PositiveInfinity,
            "-Inf" => double.NegativeInfinity,
            "NaN" => double.NaN,
            var text when double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) => v,
            var text => throw new FormatException($"{where}: '{text}' is not a number"),
        };
        if (fields.Length == 2 && !long.TryParse(fields[1], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out _))
            throw new FormatException($"{where}: '{fields[1]}' is not a timestamp");
        return new PrometheusSample(name, labels, number);
    }

    private static void CheckHistogram(PrometheusFamily family)
    {
        var series = family.Samples.GroupBy(s => string.Join(",", s.Labels.Where(l => l.Key != "le").OrderBy(l => l.Key, StringComparer.Ordinal).Select(l => $"{l.Key}={l.Value}")));
        foreach (var group in series)
        {
            var buckets = group.Where(s => s.Name == family.Name + "_bucket").ToList();
            var count = group.SingleOrDefault(s => s.Name == family.Name + "_count")
                ?? throw new FormatException($"histogram {family.Name}{{{group.Key}}} has no _count");
            if (group.SingleOrDefault(s => s.Name == family.Name + "_sum") is null)
                throw new FormatException($"histogram {family.Name}{{{group.Key}}} has no _sum");
            if (buckets.Count == 0 || buckets[^1]["le"] != "+Inf")
                throw new FormatException($"histogram {family.Name}{{{group.Key}}} does not end with le=\"+Inf\"");
            var previousBound = double.NegativeInfinity;
            var previousCount = 0.0;
            foreach (var bucket in buckets)
            {
                var le = bucket["le"] ?? throw new FormatException($"bucket of {family.Name} without le");
                var bound = le == "+Inf" ? double.PositiveInfinity : double.Parse(le, CultureInfo.InvariantCulture);
                if (bound <= previousBound || bucket.Value < previousCount)
                    throw new FormatException($"histogram {family.Name}{{{group.Key}}}: buckets are not increasing and cumulative at le={le}");
                previousBound = bound;
                previousCount = bucket.Value;
            }
            if (!previousCount.Equals(count.Value))
                throw new FormatException($"histogram {family.Name}{{{group.Key}}}: le=\"+Inf\" ({previousCount}) differs from _count ({count.Value})");
        }
    }

    private static void CheckMetricName(string name, string where)
    {
        if (name.Length == 0 || !(char.IsAsciiLetter(name[0]) || name[0] is '_' or ':') || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or ':'))
            throw new FormatException($"{where}: invalid metric name '{name}'");
    }

    private static bool IsLabelName(string name) =>
        name.Length > 0 && (char.IsAsciiLetter(name[0]) || name[0] == '_') && name.All(c => char.IsAsciiLetterOrDigit(c) || c == '_');

    private static string UnescapeHelp(string text, string where)
    {
        var result = new StringBuilder();
        for (var i = 0; i < text.Length; i++)
        {
            if (text[i] != '\\')
            {
                result.Append(text[i]);
                continue;
            }
            if (++i >= text.Length)
                throw new FormatException($"{where}: dangling backslash in HELP");
            result.Append(text[i] switch
            {
                '\\' => '\\',
                'n' => '\n',
                var other => throw new FormatException($"{where}: invalid escape \\{other} in HELP"),
            });
        }
        return result.ToString();
    }
}
