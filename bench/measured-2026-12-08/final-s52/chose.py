import json, sys, yaml
for name in sys.argv[2:]:
    d = f"{sys.argv[1]}/recipe-{name}"
    c = yaml.safe_load(open(f"{d}/config.yaml"))
    m, t = c["model"], c["training"]
    sel = m["output"]["selection"]
    ev = [json.loads(l) for l in open(f"{d}/metrics.jsonl")]
    r = ([x for x in ev if x["event"] == "reranker"] or [{}])[-1]
    f = [x for x in ev if x["event"] == "eval"][-1]
    print(f"{name}: hidden {[h['size'] if isinstance(h, dict) else h for h in m['hidden']]}, dropout {m['dropout']}, input_scale {m.get('input_scale')}, "
          f"output {sel['mode']}" + (f" budget {sel['budget']}" if sel['mode'] != 'all' else "") +
          f", lr {t['lr']} ({t['lr_schedule']}, warmup {t.get('warmup_steps')}), epochs {t['epochs']}, "
          f"votes {m['neighbours']['weight']} in {f.get('votes_space')}, leaves share {r.get('reranker_share')} depth {r.get('reranker_depth')} C {r.get('reranker_cost')} held out {r.get('reranker_held_out')}")
