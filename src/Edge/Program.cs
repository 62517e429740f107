using MProxy.Edge.Hosting;

// Socket completions run inline on the socket engine's thread instead of hopping to the thread
// pool: a proxy's work per read is short and never blocks, and on small machines the hop costs more
// than the work (measured with bench/: about a third of the CPU per transaction). Read once, when
// the first socket is created, so it must be set before anything else; an explicit setting wins.
if (Environment.GetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS") is null)
    Environment.SetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS", "1");

return await EdgeCommandLine.RunAsync(args);
