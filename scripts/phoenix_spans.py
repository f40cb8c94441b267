#!/usr/bin/env python3
"""Print the spans of one trace stored in a local Arize Phoenix (see scripts/phoenix.sh).

    phoenix_spans.py HTTP_PORT TRACE_ID [--wait-for N] [--timeout S] [--project NAME]

Polls Phoenix's REST API until at least N spans (default 1) of TRACE_ID are visible, then prints
them to stdout as a JSON list, sorted by start time:

    [{"name": ..., "span_id": "16 hex", "parent_id": "16 hex" | null, "trace_id": "32 hex",
      "service": ..., "attributes": {"flat.dotted.key": value, ...},
      "events": [{"name": ..., "attributes": {...}}, ...]}, ...]

Exits 1 with a message on stderr (and nothing on stdout) if fewer than N spans are visible
after S seconds (default 30). Connection errors count as "not yet" until the timeout, so this
can also be used while Phoenix is still starting.

TRACE_ID: hex, any case, optional 0x prefix, left-padded to 32 digits (Phoenix stores and
matches the lowercase 32-digit form only).

Phoenix drops OTLP resource attributes (service.name included) when it stores spans: it uses only
`openinference.project.name` to pick a project, and a whole trace lives in the project of the
first of its spans that arrived. So "service" is the span attribute "service.name" when a span
carries one, else null. All projects are searched unless --project is given.

Standard library only: runs with any python3 >= 3.8.
"""

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

PAGE = 1000  # the API's maximum `limit`


def get_json(base, path, params):
    url = base + path + "?" + urllib.parse.urlencode(params, doseq=True)
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.load(resp)


def paged(base, path, params):
    """Yield the items of a cursor-paginated Phoenix list endpoint."""
    cursor = None
    while True:
        query = dict(params, limit=PAGE)
        if cursor:
            query["cursor"] = cursor
        body = get_json(base, path, query)
        yield from body.get("data", [])
        cursor = body.get("next_cursor")
        if not cursor:
            return


def flatten(value, prefix=""):
    """The API already returns dotted keys; flatten any nested dict that remains, to be sure."""
    out = {}
    for key, val in value.items():
        full = prefix + key
        if isinstance(val, dict):
            out.update(flatten(val, full + "."))
        else:
            out[full] = val
    return out


def normalize(span):
    ctx = span.get("context") or {}
    attributes = flatten(span.get("attributes") or {})
    return {
        "name": span.get("name"),
        "span_id": ctx.get("span_id"),
        "parent_id": span.get("parent_id"),
        "trace_id": ctx.get("trace_id"),
        "service": attributes.get("service.name"),
        "attributes": attributes,
        "events": [
            {"name": e.get("name"), "attributes": flatten(e.get("attributes") or {})}
            for e in span.get("events") or []
        ],
    }


def fetch(base, trace_id, project):
    if project is not None:
        projects = [urllib.parse.quote(project, safe="")]
    else:
        # Project global ids are URL-safe and avoid quoting names.
        projects = [p["id"] for p in paged(base, "/v1/projects", {})]
    spans = []
    for ident in projects:
        try:
            found = list(paged(base, "/v1/projects/%s/spans" % ident, {"trace_id": trace_id}))
        except urllib.error.HTTPError as e:
            if e.code == 404:  # project not created yet (it is, with the first span sent to it)
                continue
            raise
        spans.extend(found)
        if found and project is None:
            break  # a trace lives in exactly one project
    spans.sort(key=lambda s: (s.get("start_time") or "", s.get("name") or ""))
    return [normalize(s) for s in spans]


def trace_id_arg(text):
    t = text.strip().lower()
    if t.startswith("0x"):
        t = t[2:]
    if not t or len(t) > 32 or any(c not in "0123456789abcdef" for c in t):
        raise argparse.ArgumentTypeError("not a hex trace id of at most 32 digits: %r" % text)
    return t.rjust(32, "0")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("http_port", type=int)
    ap.add_argument("trace_id", type=trace_id_arg)
    ap.add_argument("--wait-for", type=int, default=1, metavar="N",
                    help="poll until at least N spans are visible (default 1)")
    ap.add_argument("--timeout", type=float, default=30.0, metavar="S",
                    help="give up after S seconds (default 30)")
    ap.add_argument("--project", default=None,
                    help="search only this project (default: all projects)")
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args()

    base = "http://%s:%d" % (args.host, args.http_port)
    deadline = time.monotonic() + args.timeout
    spans, last_error = [], None
    while True:
        try:
            spans = fetch(base, args.trace_id, args.project)
            last_error = None
        except (urllib.error.URLError, OSError, ValueError) as e:
            last_error = e
        if last_error is None and len(spans) >= args.wait_for:
            json.dump(spans, sys.stdout, indent=2, sort_keys=True)
            sys.stdout.write("\n")
            return 0
        if time.monotonic() >= deadline:
            break
        time.sleep(0.2)

    msg = "phoenix_spans: timed out after %gs waiting for %d span(s) of trace %s at %s: found %d" % (
        args.timeout, args.wait_for, args.trace_id, base, len(spans))
    if spans:
        msg += " (%s)" % ", ".join(repr(s["name"]) for s in spans)
    if last_error is not None:
        msg += "; last error: %s" % last_error
    print(msg, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
