# Redis for lab8. From the repository root:
#   docker build -f Dockerfiles/redis.Dockerfile -t lab8/redis:1.0.0 .
# With a registry it starts from the official image; offline,
# scripts/build-images.sh passes REDIS_IMAGE=lab8/debian-redis (a debootstrap'd
# Debian 12 with the redis-server package). Configuration (password, AOF,
# maxmemory) comes from the deployment as a file, never as arguments.
ARG REDIS_IMAGE=docker.io/library/redis:7.0-bookworm
FROM ${REDIS_IMAGE}
ARG VERSION=1.0.0
LABEL org.opencontainers.image.title="lab8-redis" \
      org.opencontainers.image.description="Redis for the lab8 storage bus" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="BSD-3-Clause"
USER 999:999
WORKDIR /data
RUN ["redis-server", "--version"]
EXPOSE 6379
ENTRYPOINT ["redis-server"]
CMD ["/etc/redis/redis.conf"]
