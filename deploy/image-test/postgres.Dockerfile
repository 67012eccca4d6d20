# A stand-in for the official postgres image, for `make image-test` on a machine that reaches
# Debian's packages but no container registry. It honours the same POSTGRES_USER,
# POSTGRES_PASSWORD and POSTGRES_DB and keeps its data in /var/lib/postgresql/data.
ARG BASE_IMAGE=pimsync-base:bookworm
FROM ${BASE_IMAGE}
RUN set -eu; \
    mkdir -p /etc/postgresql-common/createcluster.d; \
    echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/no-main.conf; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15; \
    apt-get clean; rm -rf /var/lib/apt/lists/*; \
    mkdir -p /var/lib/postgresql/data /var/run/postgresql; \
    chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
USER postgres
STOPSIGNAL SIGINT
ENTRYPOINT ["sh", "/usr/local/bin/postgres-entrypoint.sh"]
