using MProxy.Edge.Qos;

namespace MProxy.Simulation.Edges;

/// <summary>
/// The waits for scheduler slots that sessions began with <c>QosSession.BeginSlotWait</c>. A
/// waiter's outcome is decided synchronously inside the scheduler (a release, a timeout, CoDel's
/// timer); the product resumes the waiting session on the thread pool, the simulation resumes it
/// right after the event that decided it (<see cref="Poll"/>), in the order the waits began.
/// </summary>
public sealed class SlotWaits
{
    private readonly List<(SchedulerWaiter Waiter, TaskCompletionSource Done)> _pending = [];

    internal IEnumerable<SchedulerWaiter> Pending
    {
        get
        {
            foreach (var (waiter, _) in _pending)
                yield return waiter;
        }
    }

    public int Count => _pending.Count;

    internal Task WaitAsync(SchedulerWaiter waiter)
    {
        var done = new TaskCompletionSource();
        _pending.Add((waiter, done));
        return done.Task;
    }

    /// <summary>Resumes every session whose wait has ended; true if any was resumed.</summary>
    public bool Poll()
    {
        var resumed = false;
        for (var i = 0; i < _pending.Count; i++)
        {
            var (waiter, done) = _pending[i];
            if (waiter.Outcome == WaitOutcome.Pending)
                continue;
            _pending.RemoveAt(i);
            done.TrySetResult();
            resumed = true;
            // The session ran on (and may have begun or ended other waits): start over.
            i = -1;
        }
        return resumed;
    }
}
