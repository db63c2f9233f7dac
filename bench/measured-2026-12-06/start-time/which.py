import os, sys, tempfile, time, json
cache = sys.argv[1]
os.environ.update(NUMBA_CACHE_DIR=cache, SLIDEPY_COMPILE_HELPER="0")
sys.path.insert(0, "/work/main/scripts")
import slidepy
from compile_times import CompileClock
clock = CompileClock(); clock.install()
from slidepy.cli import main
scratch = tempfile.mkdtemp()
t = time.perf_counter()
try:
    main(["train", "--config", "configs/quickstart.yaml", "--out", scratch + "/run", "--overwrite", "--no-progress"])
except SystemExit:
    pass
print("wall", time.perf_counter() - t)
rows = clock.rows()
print(len(rows), "functions", round(sum(r["own_s"] for r in rows), 2), "s own in all")
for r in rows[:25]:
    print(f'{r["own_s"]:6.2f} {r["with_callees_s"]:6.2f} {r["function"]}')
