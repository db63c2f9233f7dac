"""Recipe config on a dataset at other epoch counts: P@k and seconds, dropout by the recipe's rule."""
import json, subprocess, sys
from slidepy.recipe import dropout_for, learning_rate
name, epochs_list, seeds = sys.argv[1], [int(e) for e in sys.argv[2].split(",")], [int(s) for s in sys.argv[3].split(",")]
extra = sys.argv[4:]
for e in epochs_list:
    for s in seeds:
        out = f"runs/sw-{name}-{e}-{s}"
        cmd = ["slidepy", "train", "--config", f"runs/rec-{name}/config.yaml", "--out", out, "--overwrite", "--no-progress",
               "--set", f"training.epochs={e}", "--set", f"model.dropout={dropout_for(e)}", "--set", f"training.seed={s}",
               "--set", f"training.lr={learning_rate(e)}", *extra]
        subprocess.run(cmd, check=True, capture_output=True)
        rows = [json.loads(l) for l in open(f"{out}/metrics.jsonl")]
        ev = [r for r in rows if r["event"] == "eval" and r.get("complete")][-1]
        rr = [r for r in rows if r["event"] == "reranker"]
        leaf = rr[-1]["reranker_seconds"] if rr else 0.0
        print(f"{name} epochs {e:2d} seed {s} lr {learning_rate(e)} drop {dropout_for(e)}: P@1 {ev['P@1']:.4f} P@3 {ev['P@3']:.4f} P@5 {ev['P@5']:.4f}"
              f"  steps {ev['train_seconds']:.2f} s + leaves {leaf:.2f} s = {ev['train_seconds'] + leaf:.2f} s {' '.join(extra)}", flush=True)
