# Troupe's image: the project's own setup and build scripts on Debian 12 with Rust and
# Python 3.11, the machine they are tested on; this file only runs them.
#   docker build -t troupe .
#   docker run --rm -p 8001:8001 troupe        # a node serving the example models (gRPC + HTTP)
# docs/cluster.md runs routers and nodes from it (docs/kubernetes/).
FROM rust:1-bookworm
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-venv && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/troupe
COPY . .
# libtorch, ONNX Runtime, etcd, protoc and the example models (scripts/setup.sh), then the
# release binaries (scripts/build_release.sh).
RUN scripts/setup.sh && scripts/build_release.sh --slim
ENV PATH=/opt/troupe/target/release:$PATH
EXPOSE 8000 8001
CMD ["troupe-node", "--model-repository", "models/repository", "--listen", "0.0.0.0:8001"]
