"""The benchmark's chart: rows/s against requests in flight, as a self-contained SVG (standard library only).

bench/run.py calls write_svg(figures, "bench/throughput.svg") where it writes bench/results.json; to redraw
the chart from committed results without running anything:

    python3 bench/chart.py bench/results.json bench/throughput.svg

Points, from results.json:
- at `connections` in flight (64 by default), against the instant endpoint (GET /items/{id}): wrk
  (`wrk_rps`, with `connections` connections), sparkwasm without plugins (`sparkwasm_rows_s`), sparkwasm with
  the legacy chain (`legacy_chain_rows_s`) and the Python reference (`python_rows_s`), the last three with 2
  partitions × connections/2 consumers (bench/bench.yaml, run.py's python_reference);
- at partitions × consumers in flight for each entry of `in_flight`, against the endpoint that answers after
  50 ms: sparkwasm with the legacy chain (`rows_s`) and wrk with as many connections (`wrk_rps`).
The two endpoints are different experiments: their points are drawn apart (filled and hollow) and a line
joins only points of one endpoint.
"""

import json
import math
import sys
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 720, 420
LEFT, TOP, RIGHT, BOTTOM = 74, 62, 470, 350  # the plot area
LEGEND_X = 492
FONT = "system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif"
PARTITIONS = 2  # sparkwasm's (bench/bench.yaml) and the Python reference's (run.py) in the throughput runs
INSTANT, SLOW = "instant", "slow"

# key, label, second legend line, colour (Okabe-Ito), marker, dashed line
SERIES = [
    ("wrk", "wrk", "raw load generator, requests/s", "#555555", "diamond", True),
    ("sparkwasm", "sparkwasm", "no plugins", "#0072B2", "circle", False),
    ("legacy_chain", "sparkwasm + legacy chain", "retry, logging, timing, json_body", "#D55E00", "square", False),
    ("python", "Python reference", "bench/legacy_executor.py", "#009E73", "triangle", False),
]


def _number(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 else None


def points(results):
    """{series key: [(in flight, rows/s, endpoint, what)]} for every figure results holds."""
    out = {key: [] for key, *_ in SERIES}
    connections = _number(results.get("connections"))
    if connections:
        workers = PARTITIONS * (int(connections) // PARTITIONS)
        for key, field, n, what in [
            ("wrk", "wrk_rps", int(connections), f"{int(connections)} connections"),
            ("sparkwasm", "sparkwasm_rows_s", workers, f"{PARTITIONS} × {workers // PARTITIONS}"),
            ("legacy_chain", "legacy_chain_rows_s", workers, f"{PARTITIONS} × {workers // PARTITIONS}"),
            ("python", "python_rows_s", workers, f"{PARTITIONS} × {workers // PARTITIONS}"),
        ]:
            rate = _number(results.get(field))
            if rate is not None and n > 0:
                out[key].append((n, rate, INSTANT, what))
    for run in results.get("in_flight") or []:
        p, c = _number(run.get("partitions")), _number(run.get("consumers"))
        if not p or not c:
            continue
        n = int(p * c)
        if _number(run.get("wrk_rps")) is not None:
            out["wrk"].append((n, run["wrk_rps"], SLOW, f"{n:,} connections"))
        if _number(run.get("rows_s")) is not None:
            out["legacy_chain"].append((n, run["rows_s"], SLOW, f"{int(p)} × {int(c)}"))
    return out


def _nice_step(span, target=6):
    raw = span / target
    magnitude = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * magnitude:
            return m * magnitude
    return 10 * magnitude


def _rate(v):
    if v == 0:
        return "0"
    if v >= 1000 and v % 1000 == 0:
        return f"{v / 1000:g}k"
    return f"{v:,.0f}"


def _marker(shape, x, y, colour, filled):
    paint = (f'fill="{colour}" stroke="{colour}" stroke-width="1"' if filled
             else f'fill="none" stroke="{colour}" stroke-width="2"')
    if shape == "circle":
        return f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="4.5" {paint}/>'
    if shape == "square":
        return f'<rect class="point" x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" {paint}/>'
    if shape == "diamond":
        d = f"M{x:.1f},{y - 6:.1f} L{x + 6:.1f},{y:.1f} L{x:.1f},{y + 6:.1f} L{x - 6:.1f},{y:.1f} Z"
    else:  # triangle
        d = f"M{x:.1f},{y - 6:.1f} L{x + 5.5:.1f},{y + 4:.1f} L{x - 5.5:.1f},{y + 4:.1f} Z"
    return f'<path class="point" d="{d}" {paint}/>'


def _text(x, y, s, size=11, anchor="start", fill="#222222", extra=""):
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{fill}"{extra}>'
            f"{escape(s)}</text>")


def render(results):
    """The chart as SVG text."""
    data = points(results)
    every = [pt for pts in data.values() for pt in pts]
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="{escape(FONT)}" role="img">',
        "<title>rows/s against requests in flight</title>",
        "<desc>Generated by bench/chart.py from bench/results.json.</desc>",
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
        _text(LEFT - 56, 26, "Throughput against requests in flight", 16, extra=' font-weight="600"'),
        _text(LEFT - 56, 44, f"bench/run.py, run of {results.get('date', '?')}: wrk counts requests/s, the others "
              "rows landed in Delta per second", 11, fill="#666666"),
    ]

    # Axes: x log10 with half a decade of margin around the data, y linear from 0.
    if every:
        xs = [math.log10(x) for x, *_ in every]
        lo, hi = min(xs) - 0.25, max(xs) + 0.25
        step = _nice_step(max(y for _, y, *_ in every) * 1.04 or 1)
        top = math.ceil(max(y for _, y, *_ in every) * 1.04 / step) * step or step
    else:
        lo, hi, step, top = 1, 4, 1, 1

    def px(x):
        return LEFT + (math.log10(x) - lo) / (hi - lo) * (RIGHT - LEFT)

    def py(y):
        return BOTTOM - y / top * (BOTTOM - TOP)

    grid = []
    for decade in range(math.floor(lo), math.ceil(hi) + 1):
        for m in range(1, 10):
            v = m * 10 ** decade
            if not lo <= math.log10(v) <= hi:
                continue
            x = px(v)
            if m == 1:
                grid.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{BOTTOM + 5}" stroke="#d0d0d0"/>')
                grid.append(_text(x, BOTTOM + 18, f"{v:,}", 11, "middle", "#444444"))
            else:
                grid.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{BOTTOM}" stroke="#eeeeee"/>')
    ticks = int(round(top / step))
    for i in range(ticks + 1):
        v = i * step
        y = py(v)
        grid.append(f'<line x1="{LEFT - 5}" y1="{y:.1f}" x2="{RIGHT}" y2="{y:.1f}" '
                    f'stroke="{"#999999" if i == 0 else "#e2e2e2"}"/>')
        grid.append(_text(LEFT - 9, y + 4, _rate(v), 11, "end", "#444444"))
    out.append('<g class="grid">' + "".join(grid) + "</g>")
    out.append(f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{BOTTOM}" stroke="#999999"/>')
    out.append(_text((LEFT + RIGHT) / 2, BOTTOM + 40, "requests in flight (log scale)", 12, "middle"))
    out.append(_text(20, (TOP + BOTTOM) / 2, "rows/s", 12, "middle",
                     extra=f' transform="rotate(-90 20 {(TOP + BOTTOM) / 2:.1f})"'))
    if not every:
        out.append(_text((LEFT + RIGHT) / 2, (TOP + BOTTOM) / 2, "no figures in results.json", 13, "middle",
                         "#888888"))

    # Series: lines join the points of one endpoint, then the markers on top.
    for key, label, _, colour, shape, dashed in SERIES:
        pts = sorted(data[key])
        if not pts:
            continue
        g = [f'<g class="series" data-series="{key}" data-points="{len(pts)}">']
        for endpoint in (INSTANT, SLOW):
            run = [(x, y) for x, y, e, _ in pts if e == endpoint]
            if len(run) > 1:
                g.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" stroke-linejoin="round"'
                         + (' stroke-dasharray="6 4"' if dashed else "") + ' points="'
                         + " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in run) + '"/>')
        for x, y, endpoint, what in pts:
            unit = "requests/s" if key == "wrk" else "rows/s"
            where = "instant endpoint" if endpoint == INSTANT else "endpoint answering after 50 ms"
            g.append("<g>" + _marker(shape, px(x), py(y), colour, endpoint == INSTANT)
                     + f"<title>{escape(label)}: {x:,} in flight ({escape(what)}), {y:,.0f} {unit}, "
                     f"{where}</title></g>")
        g.append("</g>")
        out.append("".join(g))

    # Legend: one entry per series with figures, then what filled and hollow markers mean.
    legend, y = [], TOP + 8
    for key, label, note, colour, shape, dashed in SERIES:
        if not data[key]:
            continue
        legend.append(f'<line x1="{LEGEND_X}" y1="{y:.1f}" x2="{LEGEND_X + 24}" y2="{y:.1f}" stroke="{colour}" '
                      'stroke-width="2"' + (' stroke-dasharray="6 4"' if dashed else "") + "/>")
        legend.append(_marker(shape, LEGEND_X + 12, y, colour, True).replace('class="point" ', ""))
        legend.append(_text(LEGEND_X + 32, y + 4, label, 12.5, extra=' font-weight="600"'))
        legend.append(_text(LEGEND_X + 32, y + 18, note, 10.5, fill="#666666"))
        y += 38
    kinds = {e for _, _, e, _ in every}
    if kinds:
        y += 6
        legend.append(f'<line x1="{LEGEND_X}" y1="{y - 14:.1f}" x2="{WIDTH - 12}" y2="{y - 14:.1f}" '
                      'stroke="#e2e2e2"/>')
    if INSTANT in kinds:
        n = next(x for x, _, e, _ in every if e == INSTANT)
        legend.append(_marker("circle", LEGEND_X + 12, y, "#555555", True).replace('class="point" ', ""))
        legend.append(_text(LEGEND_X + 32, y + 4, "filled: instant endpoint", 11.5))
        legend.append(_text(LEGEND_X + 32, y + 18, f"GET /items/{{id}}, {n:,} in flight", 10.5, fill="#666666"))
        y += 38
    if SLOW in kinds:
        legend.append(_marker("circle", LEGEND_X + 12, y, "#555555", False).replace('class="point" ', ""))
        legend.append(_text(LEGEND_X + 32, y + 4, "hollow, joined: 50 ms endpoint", 11.5))
        legend.append(_text(LEGEND_X + 32, y + 18, "GET /slow/50/{id}", 10.5, fill="#666666"))
    out.append('<g class="legend">' + "".join(legend) + "</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_svg(results: dict, path: str):
    """Writes the chart of results (bench/results.json's figures) to path."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(render(results))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python3 bench/chart.py bench/results.json bench/throughput.svg")
    with open(sys.argv[1], encoding="utf-8") as f:
        write_svg(json.load(f), sys.argv[2])
