#!/usr/bin/env python3
"""Exports every raw sample a Prometheus on 127.0.0.1 holds for the last WINDOW into two
files: OpenMetrics text (timestamps in seconds, for `tsq ingest`) and Prometheus text with
millisecond timestamps (for VictoriaMetrics's /api/v1/import/prometheus).

    export.py http://127.0.0.1:19090 70m out.om out.prom

Uses the instant query `{__name__=~".+"}[WINDOW]`, whose range-vector result is the stored
samples themselves (no resampling). Series are written grouped by metric name, sorted.
"""
import json
import sys
import urllib.parse
import urllib.request


def esc(v):
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def main():
    base, window, om_path, prom_path = sys.argv[1:5]
    q = urllib.parse.urlencode({"query": '{__name__=~".+"}[%s]' % window})
    with urllib.request.urlopen(f"{base}/api/v1/query?{q}") as r:
        body = json.load(r)
    assert body["status"] == "success", body
    series = []
    for s in body["data"]["result"]:
        m = dict(s["metric"])
        name = m.pop("__name__")
        labels = ",".join(f'{k}="{esc(v)}"' for k, v in sorted(m.items()))
        series.append((name, labels, s["values"]))
    series.sort(key=lambda x: (x[0], x[1]))
    n = 0
    with open(om_path, "w") as om, open(prom_path, "w") as prom:
        last = None
        for name, labels, values in series:
            if name != last:
                om.write(f"# TYPE {name} unknown\n")
                last = name
            sel = f"{name}{{{labels}}}" if labels else name
            for t, v in values:
                # Prometheus's API prints the stored float in Go's shortest form; both
                # formats take it as is ("NaN", "+Inf" included).
                om.write(f"{sel} {v} {t}\n")
                prom.write(f"{sel} {v} {round(float(t) * 1000)}\n")
                n += 1
        om.write("# EOF\n")
    print(f"{len(series)} series, {n} samples", file=sys.stderr)


if __name__ == "__main__":
    main()
