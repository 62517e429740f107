using MProxy.Abstractions;
using MProxy.Edge.Qos;

namespace MProxy.Edge.Tests.Qos;

public sealed class QosRejectionTests
{
    [Theory]
    [InlineData("BudgetExhausted", "53400")]
    [InlineData("Shed", "53400")]
    [InlineData("RunawayThrottled", "53400")]
    [InlineData("QueueTimeout", "53300")]
    [InlineData("RunawayRejected", "57014")]
    [InlineData("RunawayCanceled", "57014")]
    [InlineData("Closed", "57P03")]
    [InlineData("Canceled", "57014")]
    public void FormatMessage_EveryReason_StartsWithMproxyNamesTheTenantAndSaysWhenToRetry(string reason, string sqlState)
    {
        var rejection = new QosRejection
        {
            Reason = Enum.Parse<QosRejectReason>(reason),
            Tenant = "acme",
            Group = "oltp",
            Priority = Priority.Low,
            Pool = "orders",
            Rule = new RunawayRuleConfig { Name = "r" },
            RetryAfter = TimeSpan.FromMilliseconds(2500),
            Limit = 10,
        };

        var message = rejection.FormatMessage();

        Assert.StartsWith("mproxy: ", message, StringComparison.Ordinal);
        Assert.Contains("'acme'", message, StringComparison.Ordinal);
        Assert.EndsWith("retry after 2.5 s", message, StringComparison.Ordinal);
        Assert.Equal(sqlState, rejection.SqlState);
        Assert.True(rejection.IsRejected);
        Assert.Equal(message, rejection.ToException().Message);
    }

    [Fact]
    public void IsRejected_Default_IsFalse()
    {
        Assert.False(default(QosRejection).IsRejected);
    }
}
