# Sourced by the scripts that start nodes and routers and then declare models through
# them (cluster.sh, bench_router.sh): `make_tokens DIR` makes two random bearer tokens
# and DIR/tokens.toml, the servers' --auth-tokens file (README "Authentication"):
#   anonymous = ["infer"]         calls without a token may infer
#   admin   infer + admin         exported as TROUPE_TOKEN for the troupe CLI; also in DIR/admin.token
#   router  infer + relay         ROUTER_TOKEN, for the router's TROUPE_NODE_TOKEN
# Sets TOKENS to the file's path. The tokens themselves are never printed.

random_token() { python3 -c 'import secrets; print(secrets.token_urlsafe(24))'; }
token_sha256() { printf %s "$1" | sha256sum | cut -d' ' -f1; }

make_tokens() {
  local dir=$1
  TROUPE_TOKEN=$(random_token)
  ROUTER_TOKEN=$(random_token)
  export TROUPE_TOKEN
  TOKENS=$dir/tokens.toml
  (
    umask 077
    printf '%s\n' "$TROUPE_TOKEN" >"$dir/admin.token"
    cat >"$TOKENS" <<EOF
anonymous = ["infer"]

[[token]]
name = "admin"
sha256 = "$(token_sha256 "$TROUPE_TOKEN")"
scopes = ["infer", "admin"]

[[token]]
name = "router"
sha256 = "$(token_sha256 "$ROUTER_TOKEN")"
scopes = ["infer", "relay"]
EOF
  )
}
