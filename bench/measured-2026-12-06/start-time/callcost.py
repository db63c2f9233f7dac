import time, numpy as np
from numba import njit
from numba.typed import List
from slidepy.engine import Engine, LayerSelection
from slidepy.config import Lsh
from slidepy.model import lsh_options
sel = [LayerSelection(), LayerSelection(mode="lsh", budget=64, lsh=lsh_options(Lsh(family="srp", k=3, l=4)))]
eng = Engine(1836, [512], 159, sel, lr=0.01)
layers = eng.layers
scratch = eng._get_scratch(True, 2)
lsh = eng.lsh_layers()
@njit
def f(a, b, c):
    return len(a) + len(b) + len(c)
lists = [List(x) for x in (layers, scratch, lsh)]
for name, args in (("tuples", (layers, scratch, lsh)), ("lists", tuple(lists))):
    f(*args)
    t = time.perf_counter()
    for _ in range(2000): f(*args)
    print(name, f"{(time.perf_counter()-t)/2000*1e6:.1f} us a call")
