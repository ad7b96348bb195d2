# The overlayd image: the daemon, its self-contained CNI plugin bundle, and the reference
# plugins it delegates to. Everything under /opt/overlayd is assembled by image/assemble.sh,
# the same script tests/deploy runs without Docker and checks.
#
#   docker build -t overlayd:0.1.0 .
#
# Debian 12 on both stages: the venv points at /usr/bin/python3 and the CNI bundle's Python
# plugin (PyInstaller) carries this interpreter's libpython, so build and runtime must be the
# same distribution release. gcc and libc6-dev are for the build stage only: they compile the
# plugin's native front end (cni_plugin/native/overlay.c, linked statically), which then needs
# nothing from the node or the runtime image.
ARG DEBIAN_IMAGE=debian:bookworm-slim

FROM ${DEBIAN_IMAGE} AS build
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates python3 python3-venv binutils gcc libc6-dev containernetworking-plugins \
    && rm -rf /var/lib/apt/lists/*
COPY . /src
RUN PIP_NO_CACHE_DIR=1 bash /src/image/assemble.sh /

FROM ${DEBIAN_IMAGE}
# python3 runs the daemon's venv; iproute2, iptables and nftables are for masquerading,
# forward rules and for people debugging inside the pod.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 iproute2 iptables nftables \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/overlayd /opt/overlayd
ENV PATH=/opt/overlayd/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1
ENTRYPOINT ["/opt/overlayd/bin/overlayd"]
