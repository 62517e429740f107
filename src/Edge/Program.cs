using MProxy.Edge.Hosting;

return await EdgeCommandLine.RunAsync(args);
