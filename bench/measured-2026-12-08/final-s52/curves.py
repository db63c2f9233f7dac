"""curve-<data>.png: P@1 against training seconds for the recipe and the config (their evaluations
along the run, on up to 2,000 test samples, then the whole test split after the leaves, at steps +
rebuilds + leaves' seconds), with Omikuji's and PECOS' one point each (results.txt)."""
import ast, json, re
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

trees = {}
for line in open("results.txt"):
    m = re.match(r"(\S+) (omikuji|pecos) (\{.*\}) maxrss", line)
    if m:
        trees.setdefault(m.group(1), {})[m.group(2)] = ast.literal_eval(m.group(3))
for name, tree in trees.items():
    fig, ax = plt.subplots(figsize=(6, 4))
    for kind, style in (("recipe", "o-"), ("config", "s--")):
        ev = [json.loads(l) for l in open(f"metrics-{kind}-{name}.jsonl")]
        evals = [e for e in ev if e["event"] == "eval"]
        leaves = sum(e["reranker_seconds"] for e in ev if e["event"] == "reranker")
        xs = [e["train_seconds"] + e["rebuild_seconds"] for e in evals]
        xs[-1] += leaves
        ax.plot(xs, [e["P@1"] for e in evals], style, label=f"slidepy {kind} (last point: whole test split, leaves in)")
    for label, marker in (("omikuji", "^"), ("pecos", "v")):
        t = tree[label]
        ax.plot([t["train_seconds"]], [t["P@1"]], marker, markersize=10, label=f"{label} ({t['train_seconds']:.1f} s)")
    ax.set_xscale("log")
    ax.set_xlabel("training seconds (2 threads; log scale)")
    ax.set_ylabel("test P@1")
    ax.set_title(f"{name}, stop 52 (2026-12-08)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(f"curve-{name}.png", dpi=90)
    print("wrote", f"curve-{name}.png")
