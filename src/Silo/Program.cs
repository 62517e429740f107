using MProxy.Silo.Hosting;

return await SiloCommandLine.RunAsync(args);
