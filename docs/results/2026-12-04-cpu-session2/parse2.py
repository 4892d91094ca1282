import re,statistics
res={}
for which in ['old','new']:
  for kind in ['window','macro']:
    name=None
    for line in open(f'{kind}-{which}.log'):
        if line.startswith('Benchmarking'): continue
        m2=re.match(r'^(\S+/\S+)\s*$',line)
        if m2: name=m2.group(1); continue
        m3=re.match(r'^(\S+/\S+)?\s+time:\s+\[(\S+) (\S+) (\S+) (\S+) (\S+) (\S+)\]',line)
        if m3:
            n=m3.group(1) or name
            v=float(m3.group(4)); u=m3.group(5)
            if u=='ps': v/=1000
            if u in('µs','us'): v*=1000
            res.setdefault((n,which),[]).append(v)
names=sorted(set(n for n,_ in res))
print("| benchmark | 5a53a07 (session start) | now | now/before |")
print("|---|---:|---:|---:|")
for n in names:
    o=res.get((n,'old'),[]); w=res.get((n,'new'),[])
    if not o or not w: continue
    mo=statistics.median(o); mw=statistics.median(w)
    print(f"| `{n}` | {mo:.2f} ns ({', '.join('%.2f'%x for x in o)}) | {mw:.2f} ns ({', '.join('%.2f'%x for x in w)}) | {mw/mo:.3f} |")
for which in ['old','new']:
    for pair in [('macro/annotated_empty','macro/by_hand_empty'),('macro/annotated_alloc_8k','macro/by_hand_alloc_8k')]:
        a=res.get((pair[0],which),[]); b=res.get((pair[1],which),[])
        r=[x/y for x,y in zip(a,b)]
        if r: print(which,pair[0],'ratio per run',['%.3f'%x for x in r],'median %.3f'%statistics.median(r))
