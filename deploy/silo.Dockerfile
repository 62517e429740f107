# The mproxy policy tier (silo). Build from the repository root:
#   docker build -f deploy/silo.Dockerfile -t mproxy-silo .
# Run (in-memory store, example policy):
#   docker run -p 7070:7070 -p 7071:7071 mproxy-silo
# Run on PostgreSQL (the silo creates and migrates schema "mproxy" at start):
#   docker run -p 7070:7070 -p 7071:7071 mproxy-silo \
#     --listen '*:7070' --dashboard-listen '*:7071' --policy /etc/mproxy/policy.yaml \
#     --store 'Host=db;Database=mproxy;Username=mproxy;Password=...'
# Ports: 7070 edge API (HTTP/2 cleartext, what edges' `policy.silo` points at),
#        7071 dashboard, /api/dashboard, /healthz, /readyz (HTTP/1.1).

FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
COPY global.json Directory.Build.props Directory.Packages.props .editorconfig ./
COPY src/Abstractions/MProxy.Abstractions.csproj src/Abstractions/
COPY src/Grains/MProxy.Grains.csproj src/Grains/
COPY src/Silo/MProxy.Silo.csproj src/Silo/
RUN dotnet restore src/Silo/MProxy.Silo.csproj
COPY src/Abstractions/ src/Abstractions/
COPY src/Grains/ src/Grains/
COPY src/Silo/ src/Silo/
RUN dotnet publish src/Silo/MProxy.Silo.csproj -c Release --no-restore -o /out

FROM mcr.microsoft.com/dotnet/aspnet:10.0
WORKDIR /app
COPY --from=build /out ./
COPY deploy/silo-policy.yaml /etc/mproxy/policy.yaml
USER app
EXPOSE 7070 7071
# Probes: GET http://<silo>:7071/healthz (alive) and /readyz (grain store migrated and reachable).
ENTRYPOINT ["dotnet", "mproxy-silo.dll"]
CMD ["--listen", "*:7070", "--dashboard-listen", "*:7071", "--store", "memory", "--policy", "/etc/mproxy/policy.yaml"]
