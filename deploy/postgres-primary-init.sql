-- Run once by the postgres image on the primary's first start (docker-compose.yml).
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD 'replicator';
CREATE ROLE reports LOGIN PASSWORD 'reports';
