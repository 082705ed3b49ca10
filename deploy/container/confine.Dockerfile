# syntax=docker/dockerfile:1
# The confinement sidecar for compose: it owns the agent's network namespace, applies
# deploy/iptables/dnswarden-confine.sh there (it alone holds CAP_NET_ADMIN), then just keeps the namespace alive.
# The agent container joins it with `network_mode: service:<this>` and has no capabilities, so it cannot
# change the rules. Build from the repository root:
#   docker build -f deploy/container/confine.Dockerfile -t dnswarden-confine:0.1.0 .
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends nftables \
 && rm -rf /var/lib/apt/lists/*
COPY deploy/iptables/dnswarden-confine.sh /usr/local/sbin/dnswarden-confine.sh
COPY deploy/container/confine-entrypoint.sh /usr/local/sbin/confine-entrypoint.sh
RUN chmod 0755 /usr/local/sbin/dnswarden-confine.sh /usr/local/sbin/confine-entrypoint.sh
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/sbin/dnswarden-confine.sh", "status", "--self"]
# Arguments are passed to `dnswarden-confine.sh apply --self`, e.g. --dnswarden 10.89.53.53
ENTRYPOINT ["/usr/local/sbin/confine-entrypoint.sh"]
