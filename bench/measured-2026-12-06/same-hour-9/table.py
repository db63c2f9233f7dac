"""The same-hour table from this directory: the configs' and the recipe's final whole-split
evaluations (metrics.jsonl) and the trees' results (trees/results.json)."""
import json, os
here = os.path.dirname(os.path.abspath(__file__))
def final(run):
    rows = [json.loads(l) for l in open(os.path.join(here, 'runs', run, 'metrics.jsonl'))]
    r = [x for x in rows if x.get('complete') and 'P@1' in x][-1]
    return r
trees = json.load(open(os.path.join(here, 'results.json')))
def tree(ds, system):
    r = trees['datasets'][ds]['systems'][system]
    return f"{r['P@1']:.4f} / {r['P@3']:.4f} / {r['P@5']:.4f}", f"{r['train_seconds']:.1f}", f"{r['peak_rss_mb']:,.0f}"
print('| data | slidepy config | s | MB | recipe | s | MB | Omikuji | s | MB | PECOS | s | MB |')
print('|---|---|---|---|---|---|---|---|---|---|---|---|---|')
names = {'bibtex': 'Bibtex', 'delicious': 'Delicious', 'debian-deps': 'DebianDeps', 'debian-nextword': 'DebianNextWord'}
def fmt(r):
    return f"{r['P@1']:.4f} / {r['P@3']:.4f} / {r['P@5']:.4f}", f"{r['train_seconds']:.1f} + {r.get('rebuild_seconds') or 0:.1f}", f"{r['peak_rss_mb']:,.0f}"
for ds, D in names.items():
    c, a = final(f'cfg-{ds}'), final(f'auto-{D}')
    print('|', D, '|', ' | '.join(fmt(c)), '|', ' | '.join(fmt(a)), '|', end=' ')
    print(' | '.join(' | '.join(tree(ds, t)) for t in ('omikuji', 'pecos')), '|')
