# Sourced by the benchmark scripts: start_node REPO OUT THREADS starts a release
# troupe-node on a free loopback port serving REPO (stdout and log under OUT) and waits
# until its models are loaded; it sets NODE (the pid) and ADDR (host:port). NODE_BIN:
# another troupe-node binary (an older build, for an A/B).
start_node() {
  "${NODE_BIN:-target/release/troupe-node}" --model-repository "$1" --listen 127.0.0.1:0 --backend-threads "$3" \
    >"$2/node.out" 2>"$2/node.log" &
  NODE=$!
  for _ in $(seq 100); do [[ -s "$2/node.out" ]] && break; sleep 0.1; done
  ADDR=$(awk '{print $4}' "$2/node.out")
  for _ in $(seq 600); do grep -q "node ready" "$2/node.log" && break; sleep 0.1; done
  grep -q "node ready" "$2/node.log" || { echo "troupe-node not ready; see $2/node.log" >&2; exit 1; }
}
