import json, sys, os
R = sys.argv[1]
def final(d):
    rows = [json.loads(l) for l in open(os.path.join(R, d, 'metrics.jsonl'))]
    ev = [r for r in rows if 'P@1' in r][-1]
    rss = max((r.get('peak_rss_mb') or 0) for r in rows)
    return ev, rss
def f(ev): return f"{ev['P@1']:.4f} / {ev['P@3']:.4f} / {ev['P@5']:.4f}"
trees = {}
for t in ('trees-bibtex-deps', 'trees-delicious-nextword'):
    p = os.path.join(R, t, 'results.json')
    if not os.path.exists(p): continue
    res = json.load(open(p))
    for ds, e in res['datasets'].items():
        for s, r in e['systems'].items():
            trees[(ds, s)] = r
for ds, cfg, auto in (('bibtex','cfg-bibtex','auto-Bibtex'), ('delicious','cfg-delicious','auto-Delicious'),
                      ('debian-deps','cfg-debian-deps','auto-DebianDeps'), ('debian-nextword','cfg-debian-nextword','auto-DebianNextWord')):
    cells = [ds]
    for d in (cfg, auto):
        try:
            ev, rss = final(d)
            cells += [f(ev), f"{ev['train_seconds']:.1f} + {ev.get('rebuild_seconds', 0):.1f}", f"{rss:,.0f}", f"ep {ev.get('epoch')}"]
        except Exception as e:
            cells += ['—', '—', '—', str(e)[:30]]
    for t in ('omikuji', 'pecos'):
        r = trees.get((ds, t))
        cells += [f(r), f"{r['train_seconds']:.1f}", f"{r['peak_rss_mb']:,.0f}"] if r else ['—'] * 3
    print(' | '.join(cells))
