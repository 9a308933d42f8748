import re, sys, subprocess, math
def parse_samples(s):
    s=s.strip()
    if s=='nil': return {}
    out={}
    # split on "}, {" boundaries: samples look like {labels} value
    for m in re.finditer(r'(\{[^}]*\})\s+(\S+?)(?:,\s|$)', s):
        v=m.group(2)
        v={'NaN':math.nan,'+Inf':math.inf,'-Inf':-math.inf}.get(v, None) if v in ('NaN','+Inf','-Inf') else float(v)
        out[m.group(1)]=v
    return out
def norm(l):
    # {__name__="x", a="b"} -> canonical sorted
    pairs=re.findall(r'([\w]+)="((?:[^"\\]|\\.)*)"', l)
    return tuple(sorted(pairs))
def close(a,b):
    if math.isnan(a) and math.isnan(b): return True
    if a==b: return True
    return abs(a-b)/(abs(a)+abs(b)) < 1e-6
for f in sys.argv[1:]:
    out=subprocess.run(['promtool','test','rules',f],capture_output=True,text=True).stderr.replace('\n    expr:', '\n\n    expr:')
    blocks=out.split('\n\n')
    for b in blocks:
        m=re.search(r'expr: "(.*)", time: (\S+),\s*\n\s*exp: (.*)\n\s*got: (.*)', b)
        if not m:
            if 'err:' in b or 'parse error' in b: print('ERR', f, b.strip()[:300])
            continue
        exp=parse_samples(m.group(3)); got=parse_samples(m.group(4))
        e2={norm(k):v for k,v in exp.items()}; g2={norm(k):v for k,v in got.items()}
        if set(e2)!=set(g2) or any(not close(e2[k],g2[k]) for k in e2):
            print('DIFF', f, m.group(1), m.group(2)); print('   exp', m.group(3)[:300]); print('   got', m.group(4)[:300])
