"""Rows a sync would ship at a given shape: train one replica and count the distinct rows touched
after 1, 2, 5, ... steps (slidepy/distributed.py averages exactly those rows, with Adam moments).

    python scripts/sync_traffic.py --config configs/amazon670k-synthetic.yaml --steps 100 --threads 2

Prints, per interval s, the touched rows per layer and the bytes one worker's share of a sync
would cost (ids + w, m, v rows), against the whole model; with W workers the rows to average are
the union over W workers, which for different data is about one worker's count after W*s steps.
Also prints the seconds per step on this machine, for README "Scale on paper".
"""

import argparse
import json
import time


from slidepy import load_config
from slidepy.distributed import new_touched_log
from slidepy.trainer import Trainer


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    overrides = list(args.overrides) + ([f"training.threads={args.threads}"] if args.threads else [])
    cfg = load_config(args.config, overrides)
    trainer = Trainer(cfg, progress=False)
    engine = trainer.engine
    engine.warmup(trainer.train_data)
    engine.touched_log = new_touched_log(engine.layers)
    order = trainer.schedule.epoch_order(0)
    b = cfg.training.batch_size
    model_bytes = sum(3 * (l.weights.nbytes + l.bias.nbytes) for l in engine.layers)
    marks = {1, 2, 5, 10, 20, 50, 100, 200, 400, 800}
    step_seconds, rebuild_seconds = 0.0, 0.0
    for s in range(1, args.steps + 1):
        start = (s - 1) * b % max(1, trainer.train_data.n_samples - b)
        rows = order[start:start + b]
        t0 = time.perf_counter()
        engine.train_step(trainer.train_data, rows)
        step_seconds += time.perf_counter() - t0
        rebuild_seconds += engine.maybe_rebuild()
        if s in marks or s == args.steps:
            touched = [(int(r.sum()), int(bb.sum())) for r, bb in engine.touched_log]
            nbytes = sum(n * (4 + 3 * l.weights.shape[1] * 4) + nb * (4 + 12)
                         for (n, nb), l in zip(touched, engine.layers))
            print(json.dumps({"steps": s, "touched_rows": [t[0] for t in touched],
                              "layer_rows": [int(l.weights.shape[0]) for l in engine.layers],
                              "touched_fraction": [round(t[0] / l.weights.shape[0], 4)
                                                   for t, l in zip(touched, engine.layers)],
                              "sync_payload_bytes": nbytes, "model_bytes_w_m_v": model_bytes,
                              "seconds_per_step": round(step_seconds / s, 4),
                              "rebuild_seconds": round(rebuild_seconds, 2), "threads": trainer.threads}),
                  flush=True)


if __name__ == "__main__":
    main()
