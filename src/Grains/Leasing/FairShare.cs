namespace MProxy.Grains.Leasing;

/// <summary>
/// Max-min fair division (water-filling): every claimant gets what it wants up to an equal share of
/// what is left; what the modest ones leave is shared among the rest. A claimant that wants at
/// least an equal share therefore always gets at least <c>total / n</c>: its guaranteed fair share.
/// </summary>
public static class FairShare
{
    /// <summary>
    /// Divides <paramref name="total"/> among <paramref name="wants"/>; a surplus left once every want
    /// is met is handed out in proportion to the wants (room to grow). The result never sums above
    /// <paramref name="total"/> (up to rounding).
    /// </summary>
    public static double[] Allocate(double total, IReadOnlyList<double> wants)
    {
        var n = wants.Count;
        var result = new double[n];
        if (n == 0 || total <= 0)
            return result;
        var order = SortedIndices(wants);
        var remaining = total;
        for (var k = 0; k < n; k++)
        {
            var i = order[k];
            var give = Math.Min(Math.Max(0, wants[i]), remaining / (n - k));
            result[i] = give;
            remaining -= give;
        }
        if (remaining > 0)
        {
            double sum = 0;
            for (var i = 0; i < n; i++)
                sum += Math.Max(0, wants[i]);
            for (var i = 0; i < n; i++)
                result[i] += sum > 0 ? remaining * Math.Max(0, wants[i]) / sum : remaining / n;
        }
        return result;
    }

    /// <summary>
    /// Divides <paramref name="total"/> whole slots among <paramref name="wants"/>, max-min fair, no
    /// surplus handed out (unclaimed slots stay free for whoever asks next). Sums to at most
    /// <paramref name="total"/> exactly.
    /// </summary>
    public static int[] AllocateSlots(int total, IReadOnlyList<int> wants)
    {
        var n = wants.Count;
        var result = new int[n];
        if (n == 0 || total <= 0)
            return result;
        var order = SortedIndices(wants);
        var remaining = total;
        for (var k = 0; k < n; k++)
        {
            var i = order[k];
            var give = Math.Min(Math.Max(0, wants[i]), remaining / (n - k));
            result[i] = give;
            remaining -= give;
        }
        // Integer division can leave a few slots that some claimant still wants: hand them out one by one.
        for (var k = n - 1; k >= 0 && remaining > 0; k--)
        {
            var i = order[k];
            var extra = Math.Min(remaining, Math.Max(0, wants[i]) - result[i]);
            if (extra > 0)
            {
                result[i] += extra;
                remaining -= extra;
            }
        }
        return result;
    }

    private static int[] SortedIndices<T>(IReadOnlyList<T> values) where T : IComparable<T>
    {
        var order = new int[values.Count];
        for (var i = 0; i < order.Length; i++)
            order[i] = i;
        // Stable: ties keep their input order, so the result depends only on the inputs.
        Array.Sort(order, (a, b) => values[a].CompareTo(values[b]) is var c && c != 0 ? c : a.CompareTo(b));
        return order;
    }
}
