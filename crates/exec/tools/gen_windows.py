# Independent reference for window functions; emits promqltest cases for both profiles.
import math, os, sys
STALE='stale'
data = {
 'g{s="a"}':      "1 5 2 8 _ 3 stale 7 4 4 9 _ _ 6",
 'g{s="b"}':      "0 -1 -2 NaN 3 3 3 10 -4 2 1 0 5 5",
 'c_total{s="a"}':"0 3 7 7 12 2 5 9 _ 14 20 1 4 8",
}
STEP=60
def samples(vals):
    out=[]
    for i,v in enumerate(vals.split()):
        if v=='_': continue
        if v=='stale': out.append((i*STEP, None)); continue
        out.append((i*STEP, float(v)))
    return out
S={k:samples(v) for k,v in data.items()}
def window(ss, t, r, p3):
    lo=t-r
    return [(x,v) for x,v in ss if (x>lo if p3 else x>=lo) and x<=t and v is not None]
def quantile(q, vals):
    if not vals or math.isnan(q): return math.nan
    if q<0: return -math.inf
    if q>1: return math.inf
    vs=sorted(vals, key=lambda x:(not math.isnan(x), x if not math.isnan(x) else 0))
    n=len(vs); rank=q*(n-1); lo=max(0,math.floor(rank)); hi=min(n-1,lo+1); w=rank-math.floor(rank)
    return vs[lo]*(1-w)+vs[hi]*w
def fmin(vs):
    m=vs[0]
    for v in vs:
        if v<m or math.isnan(m): m=v
    return m
def fmax(vs):
    m=vs[0]
    for v in vs:
        if v>m or math.isnan(m): m=v
    return m
def pvar(vs):
    if any(math.isnan(v) for v in vs): return math.nan
    m=sum(vs)/len(vs); return sum((v-m)**2 for v in vs)/len(vs)
def rate(w, t, r, counter, israte, p3):
    if len(w)<2: return None
    ts=[x for x,_ in w]; vs=[v for _,v in w]
    res=vs[-1]-vs[0]
    if counter:
        prev=vs[0] if p3 else 0.0
        for v in (vs[1:] if p3 else vs):
            if v<prev: res+=prev
            prev=v
    ds=(ts[0]-(t-r)); de=(t-ts[-1]); si=ts[-1]-ts[0]; avg=si/(len(w)-1); th=avg*1.1
    if p3:
        if ds>=th: ds=avg/2
        if counter and res>0 and vs[0]>=0:
            dz=si*(vs[0]/res)
            if dz<ds: ds=dz
        if de>=th: de=avg/2
        iv=si+ds+de
    else:
        if counter and res>0 and vs[0]>=0:
            dz=si*(vs[0]/res)
            if dz<ds: ds=dz
        iv=si+(ds if ds<th else avg/2)+(de if de<th else avg/2)
    f=iv/si
    if israte: f/=r
    return res*f
def deriv(w):
    if len(w)<2: return None
    xs=[(x-w[0][0]) for x,_ in w]; ys=[v for _,v in w]
    if all(y==ys[0] for y in ys): return 0.0 if not math.isinf(ys[0]) else math.nan
    if any(math.isnan(y) for y in ys): return math.nan
    n=len(xs); mx=sum(xs)/n; my=sum(ys)/n
    return sum((x-mx)*(y-my) for x,y in zip(xs,ys))/sum((x-mx)**2 for x in xs)
def changes(vs):
    return float(sum(1 for a,b in zip(vs,vs[1:]) if b!=a and not (math.isnan(a) and math.isnan(b))))
F = {
 'sum_over_time': lambda w,t,r,p3: sum(v for _,v in w),
 'count_over_time': lambda w,t,r,p3: float(len(w)),
 'avg_over_time': lambda w,t,r,p3: sum(v for _,v in w)/len(w),
 'min_over_time': lambda w,t,r,p3: fmin([v for _,v in w]),
 'max_over_time': lambda w,t,r,p3: fmax([v for _,v in w]),
 'last_over_time': lambda w,t,r,p3: w[-1][1],
 'stddev_over_time': lambda w,t,r,p3: math.sqrt(pvar([v for _,v in w])),
 'stdvar_over_time': lambda w,t,r,p3: pvar([v for _,v in w]),
 'changes': lambda w,t,r,p3: changes([v for _,v in w]),
 'resets': lambda w,t,r,p3: float(sum(1 for (_,a),(_,b) in zip(w,w[1:]) if b<a)),
 'idelta': lambda w,t,r,p3: (w[-1][1]-w[-2][1]) if len(w)>=2 else None,
 'irate': lambda w,t,r,p3: ((w[-1][1] if w[-1][1]<w[-2][1] else w[-1][1]-w[-2][1])/((w[-1][0]-w[-2][0]))) if len(w)>=2 else None,
 'delta': lambda w,t,r,p3: rate(w,t,r,False,False,p3),
 'increase': lambda w,t,r,p3: rate(w,t,r,True,False,p3),
 'rate': lambda w,t,r,p3: rate(w,t,r,True,True,p3),
 'deriv': lambda w,t,r,p3: deriv(w),
 'quantile_over_time(0.3,': lambda w,t,r,p3: quantile(0.3,[v for _,v in w]),
 'present_over_time': lambda w,t,r,p3: 1.0,
}
def fmt(v):
    if v is None: return '_'
    if math.isnan(v): return 'NaN'
    if math.isinf(v): return '+Inf' if v>0 else '-Inf'
    return repr(v)
def dur(s):
    m,sec=divmod(int(s),60)
    return (f'{m}m' if m else '')+(f'{sec}s' if sec else '') or '0s'
def emit(p3):
    out=[]
    if not p3: out.append('profile prometheus-2.42\n')
    out.append('load 1m')
    for k,v in data.items(): out.append(f'  {k} {v}')
    out.append('')
    times=[0,60,150,240,330,360,420,540,600,780,900,1200]
    ranges=[120,210,300]
    for fn,f in F.items():
        for metric in (['c_total'] if fn in ('rate','increase','irate','resets') else ['g']):
            for r in ranges:
                if fn.endswith(','): expr=f'{fn} {metric}[{dur(r)}])'
                else: expr=f'{fn}({metric}[{dur(r)}])'
                for t in times:
                    exp=[]
                    for k,ss in S.items():
                        if not k.startswith(metric+'{'): continue
                        w=window(ss,t,r,p3)
                        if not w: continue
                        v=f(w,t,r,p3)
                        if v is None: continue
                        lab=k if fn=='last_over_time' else k[len(metric):]
                        exp.append(f'  {lab} {fmt(v)}')
                    head=f'eval instant at {dur(t)} {expr}'
                    if fn in ('rate','increase') and p3 and metric=='g': head+='\n  expect info'
                    out.append(head); out+=exp; out.append('')
                # range query over all steps
                start,end,step=0,900,90
                rows={}
                for k,ss in S.items():
                    if not k.startswith(metric+'{'): continue
                    vals=[]
                    for t in range(start,end+1,step):
                        w=window(ss,t,r,p3)
                        v=f(w,t,r,p3) if w else None
                        vals.append(v)
                    if any(v is not None for v in vals):
                        lab=k if fn=='last_over_time' else k[len(metric):]
                        rows[lab]=' '.join(fmt(v) for v in vals)
                out.append(f'eval range from {dur(start)} to {dur(end)} step {dur(step)} {expr}')
                for lab,vals in rows.items(): out.append(f'  {lab} {vals}')
                out.append('')
    return '\n'.join(out)
hdr='# Generated by an independent Python reference of the window semantics (both profiles);\n# the prometheus-2.42 variant was checked with promtool (Prometheus 2.42).\n\n'
open(os.path.join(os.path.dirname(os.path.abspath(__file__)), '../../../tests/data/queries/') + 'windows_generated.test','w').write(hdr+emit(True))
open(os.path.join(os.path.dirname(os.path.abspath(__file__)), '../../../tests/data/queries/') + 'windows_generated_242.test','w').write(hdr+emit(False))
