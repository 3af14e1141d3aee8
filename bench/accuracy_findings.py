#!/usr/bin/env python3
"""accuracy_findings.py: the findings of bench/accuracy.sh, computed from the run's own tables.

    bench/accuracy_findings.py WORK_DIR

Reads the tables bench/accuracy.sh wrote into WORK_DIR (a.md, b.md, c.md: markdown rows;
fo-summary: one line per failover; window.md: bench/window_accuracy's output) and writes one
file of sentences per section (find-a.md, find-b.md, find-c.md, find-d.md), so that every
sentence of docs/accuracy.md that states a finding says what this run measured, whatever it
measured. Writes the rows that break a guarantee to violations.txt (empty when none):

  (a), (b)  any row admitted beyond the exact allowance (beyond > 0);
  (d)       token_bucket or gcra against the arrival curve, or fixed_window against its aligned
            windows, with a true clock (the patterns not marked "skewed"): any false admit or any
            admission beyond the reference.

(c) is reported, not gated: fail open (allow) and local fallback admit beyond the limit by
design, and a failover can lose the master's last writes (asynchronous replication).
"""
import os
import re
import sys


def rows(path):
    """The markdown table rows of `path` (header and separator rows excluded), as cell lists."""
    out = []
    if not os.path.exists(path):
        return out
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if not line.startswith("|") or line.startswith("|---") or line.startswith("| algorithm") \
                or line.startswith("| pattern") or line.startswith("| on_store_error"):
            continue
        out.append([c.strip().strip("*").strip() for c in line.strip("|").split("|")])
    return out


def num(cell):
    """The leading integer of a cell ("12018 (99.17%)" -> 12018)."""
    m = re.match(r"-?\d+", cell)
    return int(m.group(0)) if m else 0


def concurrency(path):
    """(a)/(b) rows as dicts."""
    keys = ["algorithm", "policy", "interval", "requests", "ok", "limited", "errors", "decisions",
            "fail_open", "admitted", "exact", "beyond"]
    return [dict(zip(keys, r)) for r in rows(path) if len(r) == len(keys)]


def plural(n, one, many):
    return f"{n} {one if n == 1 else many}"


def section_a(a):
    beyond_rows = [r for r in a if num(r["beyond"]) > 0]
    below = [num(r["exact"]) - num(r["admitted"]) for r in a if num(r["admitted"]) < num(r["exact"])]
    fail_open = sum(num(r["fail_open"]) for r in a)
    lines = []
    if beyond_rows:
        lines.append(
            f"**In this run, {plural(len(beyond_rows), 'row', 'rows')} of {len(a)} admitted beyond "
            "the exact allowance**: "
            + "; ".join(f"{r['algorithm']} {r['policy']}: {r['beyond']} beyond" for r in beyond_rows)
            + " (`make bench-accuracy` exits 1).")
    else:
        lines.append(f"In this run, no row of {len(a)} admitted beyond the exact allowance.")
    if below:
        lines.append(
            f"Admitted was below exact in {plural(len(below), 'row', 'rows')}, by "
            f"{min(below)} to {max(below)} (the interval between the two `TIME` readings is a "
            "little longer than the load).")
    lines.append(f"Requests admitted without the store (fail open) over the table: {fail_open}.")
    lines.extend(sliding_log_sentences(a))
    return " ".join(lines)


def sliding_log_sentences(table):
    """For the 1 s sliding-window rows: what the counter admitted beside its guarantee (the
    exact column: limit per aligned window touched) and beside the exact sliding log it
    approximates (limit per (t - 1 s, t]: limit x (floor(interval) + 1)), which is not gated."""
    out = []
    for r in table:
        if r["algorithm"] != "sliding_window" or not r["policy"].endswith("1 s"):
            continue
        m = re.match(r"(\d+) per 1 s", r["policy"])
        try:
            interval = float(r["interval"])
        except ValueError:
            continue
        if not m:
            continue
        log = int(m.group(1)) * (int(interval) + 1)
        over = num(r["admitted"]) - log
        out.append(
            f"The sliding window counter ({r['policy']}) admitted {r['admitted']} over "
            f"{r['interval']} s: its guarantee (one limit per aligned window touched) is "
            f"{r['exact']}, and the exact sliding log it approximates allows {log}"
            + (f", {over} fewer than it admitted (the approximation near window edges, "
               "measured in (d))." if over > 0 else "."))
    return out


def section_b(a, b):
    tot_a = sum(num(r["beyond"]) for r in a)
    tot_b = sum(num(r["beyond"]) for r in b)
    by_key = {(r["algorithm"], r["policy"]): r for r in a}
    diffs = []
    for r in b:
        ra = by_key.get((r["algorithm"], r["policy"]))
        if ra:
            diffs.append(num(r["admitted"]) - num(ra["admitted"]))
    lines = [f"Admitted beyond exact, summed over the rows: {tot_b} with skewed clocks, "
             f"{tot_a} in (a)."]
    if diffs:
        lines.append(
            f"Per row, admitted with skew minus admitted in (a): from {min(diffs):+d} to "
            f"{max(diffs):+d} (each load's interval differs a little; the exact column follows it).")
    lines.extend(sliding_log_sentences(b))
    if tot_b == 0 and tot_a == 0:
        lines.append("In this run skew let no request beyond the exact allowance through.")
    else:
        lines.append(f"**In this run, skew or concurrency let {tot_b} requests beyond the exact "
                     "allowance through (`make bench-accuracy` exits 1).**")
    return " ".join(lines)


def section_c(c, summary):
    keys = ["mode", "algorithm", "limit", "requests", "ok", "degraded", "limited", "floodgate_503",
            "haproxy_503", "other", "exact", "beyond", "store_beyond"]
    rs = [dict(zip(keys, r)) for r in rows(c) if len(r) == len(keys)]
    lines = []
    h503 = sum(num(r["haproxy_503"]) for r in rs)
    reqs = sum(num(r["requests"]) for r in rs)
    downs = sum(int(x.split()[3]) for x in summary if len(x.split()) >= 5)
    none = sum(int(x.split()[4]) for x in summary if len(x.split()) >= 5)
    lines.append(
        f"In this run: {h503} of {reqs} requests got a 503 from HAProxy (no instance in "
        f"rotation); HAProxy took an instance out {plural(downs, 'time', 'times')} and had none "
        f"left {plural(none, 'time', 'times')}.")
    sb = [num(r["store_beyond"]) for r in rs]
    if sb:
        lines.append(
            f"Admitted by the store beyond exact (writes lost with the dead master): {min(sb)} to "
            f"{max(sb)} per load, {sum(sb)} in all.")
    for mode in ("allow", "deny", "local"):
        m = [r for r in rs if r["mode"] == mode]
        if m:
            lines.append(
                f"on_store_error {mode}: {sum(num(r['degraded']) for r in m)} admitted degraded, "
                f"{sum(num(r['floodgate_503']) for r in m)} answered 503 by floodgate.")
    return "  \n".join(lines)


def section_d(window):
    keys = ["algorithm", "reference", "pattern", "requests", "admitted", "reference_admits",
            "false_admits", "false_denies", "beyond"]
    rs = [dict(zip(keys, r)) for r in rows(window) if len(r) == len(keys)]
    out = {}
    exact_pairs = [("token_bucket", "arrival curve"), ("gcra", "arrival curve"),
                   ("fixed_window", "aligned windows")]
    sentences = []
    violations = []
    for alg, ref in exact_pairs:
        true_clock = [r for r in rs if r["algorithm"] == alg and r["reference"] == ref
                      and not r["pattern"].startswith("skewed")]
        if not true_clock:
            continue
        fa = sum(num(r["false_admits"]) for r in true_clock)
        fd = sum(num(r["false_denies"]) for r in true_clock)
        bey = max(num(r["beyond"]) for r in true_clock)
        s = (f"{alg} against the {ref}, true clock, {len(true_clock)} patterns: {fa} false "
             f"admits, {fd} false denies, at most {bey} beyond")
        s += " (every decision the exact one)." if fa == fd == bey == 0 else "."
        sentences.append(s)
        for r in true_clock:
            if num(r["false_admits"]) > 0 or num(r["beyond"]) > 0:
                violations.append(f"(d) {alg} vs {ref}, {r['pattern']}: {r['false_admits']} false "
                                  f"admits, {r['beyond']} beyond")
    out["exact"] = " ".join(sentences)
    sw = {r["pattern"]: r for r in rs
          if r["algorithm"] == "sliding_window" and r["reference"] == "sliding log"}
    parts = []
    for pat in ("steady 0.9x", "steady 2x", "edge burst + steady"):
        r = sw.get(pat)
        if r:
            a, ref = num(r["admitted"]), num(r["reference_admits"])
            pct = 100.0 * (a - ref) / ref if ref else 0.0
            parts.append(f"{pat}: admitted {a} where the log admits {ref} ({pct:+.1f} %), "
                         f"{r['false_admits']} false admits, {r['false_denies']} false denies, "
                         f"{r['beyond']} beyond")
    out["sliding"] = "; ".join(parts) + "." if parts else ""
    fw = [r for r in rs if r["algorithm"] == "fixed_window" and r["reference"] == "sliding log"
          and not r["pattern"].startswith("skewed")]
    out["fixed"] = (f"most beyond the sliding log in one period: {max(num(r['beyond']) for r in fw)}"
                    if fw else "")
    sk = [r for r in rs if r["algorithm"] in ("token_bucket", "gcra")
          and r["pattern"].startswith("skewed")]
    out["skewed"] = (f"over the skewed patterns, token_bucket and gcra made "
                     f"{sum(num(r['false_admits']) for r in sk)} false admits and "
                     f"{sum(num(r['false_denies']) for r in sk)} false denies, at most "
                     f"{max(num(r['beyond']) for r in sk) if sk else 0} beyond" if sk else "")
    return out, violations


def section_cache(a, a0, hits_path):
    """(a) with the deny cache against (a) without it: rows, and the finding."""
    hits = {}
    if os.path.exists(hits_path):
        for r in rows(hits_path):
            if len(r) == 4:
                hits[(r[0], r[1])] = (num(r[2]), num(r[3]))
    without = {(r["algorithm"], r["policy"]): r for r in a0}
    out_rows, beyond_with, beyond_without, cached = [], 0, 0, 0
    for r in a:
        r0 = without.get((r["algorithm"], r["policy"]))
        short = {"token_bucket": "tb", "gcra": "gcra", "sliding_window": "sw",
                 "fixed_window": "fw"}[r["algorithm"]]
        kind = "long" if r["policy"].endswith("1 h") else "short"
        lim, hit = hits.get((r["algorithm"], f"{short}-{kind}"), (0, 0))
        cached += hit
        beyond_with += num(r["beyond"])
        if r0:
            beyond_without += num(r0["beyond"])
        out_rows.append(f"| {r['algorithm']} | {r['policy']} | {lim} | {hit} | {r['admitted']} | "
                        f"{r['exact']} | "
                        f"{r0['admitted'] if r0 else '-'} | {r0['exact'] if r0 else '-'} | "
                        f"{r0['beyond'] if r0 else '-'} |")
    text = (f"Over these rows the deny caches answered {cached} requests with 429 without Redis "
            "(counted by the instances; wrk does not count the answers still in flight when it "
            "stops, so a row's two counts can differ by a few). Admitted beyond "
            f"exact: {beyond_with} with the cache, {beyond_without} without it")
    if beyond_with == 0 and beyond_without == 0:
        text += ": with and without it, every row admitted within the exact allowance."
    else:
        text += "."
    return "\n".join(out_rows), text


def main():
    work = sys.argv[1]
    a = concurrency(os.path.join(work, "a.md"))
    a0 = concurrency(os.path.join(work, "a0.md"))
    cache_rows, cache_text = section_cache(a, a0, os.path.join(work, "concurrency-hits"))
    b = concurrency(os.path.join(work, "b.md"))
    summary_path = os.path.join(work, "fo-summary")
    summary = open(summary_path).read().splitlines() if os.path.exists(summary_path) else []
    d, violations = section_d(os.path.join(work, "window.md"))
    for label, rs in (("(a)", a), ("(b)", b), ("(a) without the deny cache", a0)):
        for r in rs:
            if num(r["beyond"]) > 0:
                violations.append(f"{label} {r['algorithm']} {r['policy']}: admitted "
                                  f"{r['admitted']}, exact {r['exact']}, beyond {r['beyond']}")
    files = {
        "find-a.md": section_a(a),
        "find-cache-rows.md": cache_rows,
        "find-cache.md": cache_text,
        "find-b.md": section_b(a, b),
        "find-c.md": section_c(os.path.join(work, "c.md"), summary),
        "find-d-exact.md": d["exact"],
        "find-d-sliding.md": d["sliding"],
        "find-d-fixed.md": d["fixed"],
        "find-d-skewed.md": d["skewed"],
        "violations.txt": "\n".join(violations),
    }
    for name, text in files.items():
        with open(os.path.join(work, name), "w", encoding="utf-8") as f:
            f.write(text + ("\n" if text else ""))


if __name__ == "__main__":
    main()
