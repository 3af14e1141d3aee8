#!/usr/bin/env python3
"""deploy/grafana/floodgate.json: valid JSON, a Grafana dashboard, and every metric its queries
name is a floodgate_ family that floodgate exports (the list in src/decide/metrics.h's header,
which metrics_test holds to what /metrics prints). A histogram's _bucket, _sum and _count count as
its family.

  tests/deploy/grafana_test.py SOURCE_DIR"""
import json
import re
import sys

src = sys.argv[1]
failures = []

families = set()
with open(src + "/src/decide/metrics.h") as f:
    for line in f:
        m = re.match(r"^//   ([a-z_]+)(\{[^}]*\})?\s+(counter|gauge|histogram)\b", line)
        if m:
            families.add("floodgate_" + m.group(1))
if len(families) < 20:
    failures.append("only %d families read from metrics.h: its header changed form" % len(families))

with open(src + "/deploy/grafana/floodgate.json") as f:
    dash = json.load(f)  # raises on invalid JSON: the test fails

if dash.get("title") != "floodgate" or not isinstance(dash.get("panels"), list):
    failures.append("not a dashboard titled floodgate with panels")

exprs = []
for p in dash["panels"]:
    if not p.get("title"):
        failures.append("panel %s has no title" % p.get("id"))
    for t in p.get("targets", []):
        exprs.append((p.get("title"), t["expr"]))
for v in dash.get("templating", {}).get("list", []):
    if isinstance(v.get("query"), str) and "floodgate_" in v["query"]:
        exprs.append(("variable " + v["name"], v["query"]))
if len(exprs) < 10:
    failures.append("only %d queries" % len(exprs))

for title, expr in exprs:
    names = re.findall(r"\bfloodgate_[A-Za-z0-9_:]+", expr)
    if not names:
        failures.append("%s: %r names no floodgate_ metric" % (title, expr))
    for name in names:
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if name not in families and base not in families:
            failures.append("%s: %s is not a floodgate metric family" % (title, name))

for f in failures:
    print("FAIL: " + f, file=sys.stderr)
if failures:
    sys.exit(1)
print("grafana: %d panels, %d queries over %d families: ok" %
      (len(dash["panels"]), len(exprs), len(families)))
