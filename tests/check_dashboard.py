"""Checks that every metric the Grafana dashboard queries exists in a Prometheus text exposition
(what `sparkwasm run --metrics-addr` serves at /metrics). Usage:

    check_dashboard.py [--dashboard FILE] [--samples-only] [EXPOSITION]

EXPOSITION is a file path, or `-` / nothing for stdin. The dashboard defaults to
docs/grafana/sparkwasm-dashboard.json beside this repository's tests/. A metric exists if the
exposition has a sample of it or declares it in a `# TYPE` line (a histogram `h` declares `h_bucket`,
`h_sum` and `h_count`): a counter with labels and no series yet, such as
`sparkwasm_plugin_failures_total` when no plugin failed, is only declared. `--samples-only` wants a
sample. Exit 0: all found; 1: missing metrics, one per line with the panels that use them; 2: usage
or an unreadable file."""
import json
import os
import re
import sys

DEFAULT_DASHBOARD = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "docs", "grafana", "sparkwasm-dashboard.json"
)

# PromQL words that look like identifiers but are not metric names (functions are recognised by the
# `(` after them, so only keywords, modifiers and aggregations written without parentheses here).
KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
    "offset", "atan2", "inf", "nan",
}
IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr):
    """The metric names a PromQL expression selects."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)  # string literals
    e = re.sub(r"\{[^}]*\}", " ", e)  # label matchers, Grafana variables in them included
    e = re.sub(r"\[[^\]]*\]", " ", e)  # ranges and subqueries ([5m], [$__rate_interval], [1h:1m])
    # Label lists after grouping and matching modifiers: by (le), on (instance), group_left (x).
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\$\{?[A-Za-z0-9_:]+\}?", " ", e)  # Grafana variables outside matchers
    names = set()
    for m in IDENT.finditer(e):
        word = m.group(0)
        start, end = m.span()
        if start > 0 and (e[start - 1].isdigit() or e[start - 1] == "."):
            continue  # the exponent or unit of a number: 1e3, 5m
        if e[end:].lstrip().startswith("("):
            continue  # a function or an aggregation: rate(, sum(
        if word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


def panels(items):
    """Every panel, also those inside rows (collapsed rows keep theirs in `panels`)."""
    for p in items:
        yield p
        yield from panels(p.get("panels", []))


def dashboard_metrics(dashboard):
    """{metric: [panel titles]} over every panel's targets."""
    used = {}
    for p in panels(dashboard.get("panels", [])):
        for t in p.get("targets", []):
            expr = t.get("expr")
            if not expr:
                continue
            for name in metric_names(expr):
                used.setdefault(name, []).append(p.get("title") or f"panel {p.get('id')}")
    return used


def exposition_metrics(text):
    """(names with a sample, names declared by `# TYPE`), histogram and summary series included."""
    sampled, declared = set(), set()
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split()
            if len(parts) >= 4 and parts[1] == "TYPE":
                name, kind = parts[2], parts[3]
                declared.add(name)
                if kind == "histogram":
                    declared.update({f"{name}_bucket", f"{name}_sum", f"{name}_count"})
                elif kind == "summary":
                    declared.update({f"{name}_sum", f"{name}_count"})
            continue
        m = IDENT.match(line)
        if m:
            sampled.add(m.group(0))
    return sampled, declared


def main(argv):
    args = list(argv)
    dashboard_path = DEFAULT_DASHBOARD
    samples_only = False
    source = "-"
    while args:
        a = args.pop(0)
        if a == "--dashboard" and args:
            dashboard_path = args.pop(0)
        elif a == "--samples-only":
            samples_only = True
        elif a in ("-h", "--help"):
            print(__doc__)
            return 0
        elif a.startswith("--") or source != "-":
            print(__doc__, file=sys.stderr)
            return 2
        else:
            source = a
    try:
        with open(dashboard_path) as f:
            dashboard = json.load(f)
        if source == "-":
            text = sys.stdin.read()
        else:
            with open(source) as f:
                text = f.read()
    except (OSError, ValueError) as e:
        print(f"check_dashboard: {e}", file=sys.stderr)
        return 2
    used = dashboard_metrics(dashboard)
    if not used:
        print(f"check_dashboard: no metric in any panel's expr in {dashboard_path}", file=sys.stderr)
        return 2
    sampled, declared = exposition_metrics(text)
    known = sampled if samples_only else sampled | declared
    missing = sorted(n for n in used if n not in known)
    for name in missing:
        where = "declared, no sample" if name in declared else "not in the exposition"
        print(f"missing: {name} ({where}; used by: {', '.join(sorted(set(used[name])))})")
    print(f"{len(used)} metrics in the dashboard, {len(missing)} missing")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
