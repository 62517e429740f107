# The mproxy edge. Build from the repository root:
#   docker build -f deploy/edge.Dockerfile -t mproxy-edge .
# Run with a configuration file mounted at /etc/mproxy/mproxy.yaml:
#   docker run -p 6432:6432 -p 9930:9930 -v $PWD/deploy/mproxy.yaml:/etc/mproxy/mproxy.yaml mproxy-edge
# Ports: 6432 PostgreSQL protocol, 9930 admin HTTP (/healthz).

FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
COPY global.json Directory.Build.props Directory.Packages.props .editorconfig ./
COPY src/Abstractions/MProxy.Abstractions.csproj src/Abstractions/
COPY src/Grains/MProxy.Grains.csproj src/Grains/
COPY src/Edge/MProxy.Edge.csproj src/Edge/
RUN dotnet restore src/Edge/MProxy.Edge.csproj
COPY src/Abstractions/ src/Abstractions/
COPY src/Grains/ src/Grains/
COPY src/Edge/ src/Edge/
RUN dotnet publish src/Edge/MProxy.Edge.csproj -c Release --no-restore -o /out

FROM mcr.microsoft.com/dotnet/aspnet:10.0
WORKDIR /app
COPY --from=build /out ./
COPY deploy/mproxy.yaml /etc/mproxy/mproxy.yaml
USER app
EXPOSE 6432 9930
ENTRYPOINT ["dotnet", "mproxy.dll", "--config", "/etc/mproxy/mproxy.yaml"]
