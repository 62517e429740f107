namespace MProxy.Edge.Policy;

/// <summary>How the edge's policy client behaves; built by EdgeHost from the <c>policy:</c> configuration section.</summary>
public sealed record PolicyClientOptions
{
    /// <summary>This edge's identity at the tier; unique per process (host name plus a start nonce).</summary>
    public required string EdgeId { get; init; }

    /// <summary>Until the tier says otherwise (its <c>nextExchangeIn</c>), exchange this often.</summary>
    public TimeSpan ExchangeInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>One exchange taking longer than this counts as a failure.</summary>
    public TimeSpan CallTimeout { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>First retry delay after a failure; doubles per consecutive failure up to <see cref="BackoffMax"/>, with jitter.</summary>
    public TimeSpan BackoffBase { get; init; } = TimeSpan.FromMilliseconds(500);

    public TimeSpan BackoffMax { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>The local-only share never drops below this many RU/s per tenant (never fail closed).</summary>
    public double LocalShareFloorRuPerSecond { get; init; } = 1;

    /// <summary>Tenants with no usage for this long stop being reported (their allowance stays readable).</summary>
    public TimeSpan TenantIdleTimeout { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// At most this many query shapes per exchange, the costliest per execution first (runaway
    /// candidates); cheaper ones in excess are dropped, so one edge cannot flood the tier.
    /// </summary>
    public int MaxFingerprintsPerExchange { get; init; } = 500;

    /// <summary>Seeds the retry jitter (deterministic per edge; a simulation passes its own).</summary>
    public int? JitterSeed { get; init; }
}
