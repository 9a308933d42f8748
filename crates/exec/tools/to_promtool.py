import sys, re, os
NEW = ['limitk','limit_ratio','mad_over_time','ts_of_','first_over_time','sort_by_label','double_exponential_smoothing','info(','histogram_count','histogram_sum','histogram_avg','histogram_fraction','histogram_std','@ start','@ end', '0x10','1_000']
def yq(s): return "'" + s.replace("'", "''") + "'"
def parse_time(s):
    s=s.strip()
    try: return float(s)
    except: pass
    tot=0
    for n,u in re.findall(r'(\d+)(ms|s|m|h|d|w|y)', s):
        tot+=int(n)*{'ms':0.001,'s':1,'m':60,'h':3600,'d':86400,'w':604800,'y':31536000}[u]
    return -tot if s.startswith('-') else tot
def val(v):
    v=v.strip()
    if v in ('NaN',): return '.nan'
    if v in ('Inf','+Inf'): return '.inf'
    if v=='-Inf': return '-.inf'
    return v
out=[]
def fixv(v):
    def rep(m):
        return ' '.join([m.group(1)]*(int(m.group(2))+1))
    return re.sub(r'\b(NaN|-?Inf)x(\d+)', rep, v)

for path in sys.argv[1:]:
    lines=open(path).read().split('\n')
    groups=[]; series=[]; interval=None; tests=[]; ok=True; profile='promql3'
    def flush():
        global series, tests
        if tests and interval:
            groups.append((interval, list(series), list(tests)))
    i=0
    while i < len(lines):
        l=lines[i].strip(); ln=i+1; i+=1
        if not l or l.startswith('#'): continue
        block=[]
        while i < len(lines) and lines[i].strip():
            if not lines[i].strip().startswith('#'): block.append((i+1, lines[i].strip()))
            i+=1
        if l.startswith('load '):
            iv=l[5:].strip()
            if interval and iv!=interval and series: interval=None
            else: interval=iv
            series += [b for _,b in block]
        elif l=='clear':
            flush(); series=[]; tests=[]; interval=None
        elif l.startswith('profile'): profile=l.split()[1]
        elif l.startswith('eval instant at') or l.startswith('eval_ordered instant at'):
            m=re.match(r'eval(?:_ordered)? instant at (\S+) (.*)', l)
            t, expr = m.group(1), m.group(2)
            if any(n in expr for n in NEW): continue
            if any(b.startswith('expect fail') or b.startswith('expect range') for _,b in block): continue
            exps=[]; bad=False
            for _,b in block:
                if b.startswith('expect'): continue
                mm=re.match(r'^(.*[}\w])\s+(\S+)$', b)
                if not mm or not ('{' in b or re.match(r'^[a-zA-Z_]', b)): bad=True; break
                exps.append((mm.group(1), val(mm.group(2))))
            if bad: continue
            tests.append((ln, t, expr, exps, profile))
    flush()
    base=os.path.basename(path)
    y=['tests:']
    for iv, ser, ts in groups:
        y.append(f'  - interval: {iv}')
        y.append('    input_series:')
        for s in ser:
            m=re.match(r'^(\S*?\{.*\}|\S+)\s+(.*)$', s)
            y.append(f'      - series: {yq(m.group(1))}')
            y.append(f'        values: {yq(fixv(m.group(2)))}')
        y.append('    promql_expr_test:')
        for ln,t,expr,exps,prof in ts:
            secs=parse_time(t)
            if secs < 0: continue
            y.append(f'      - expr: {yq(expr)}  # {base}:{ln} {prof}')
            y.append(f'        eval_time: {int(secs*1000)}ms')
            y.append('        exp_samples:')
            for lab,v in exps:
                y.append(f'          - labels: {yq(lab)}')
                y.append(f'            value: {v}')
            if not exps: y[-1]='        exp_samples: []'
    open(os.path.join(os.environ.get('OUT', '.'), f'{base}.yml'),'w').write('\n'.join(y)+'\n')
