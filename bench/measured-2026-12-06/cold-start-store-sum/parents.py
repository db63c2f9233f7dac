import os, sys, tempfile
os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(); os.environ["SLIDEPY_COMPILE_HELPER"] = "0"
import slidepy  # noqa
from numba.core import event
stack = []
hits = {}
class L(event.Listener):
    def on_start(self, ev):
        d = ev.data["dispatcher"]; name = getattr(d, "py_func", d).__qualname__ if hasattr(d, "py_func") else str(d)
        mod = getattr(getattr(d, "py_func", None), "__module__", "")
        stack.append(f"{mod}.{name}")
    def on_end(self, ev):
        name = stack.pop()
        if any(s in name for s in ("raise_with_shape", "unicode", "repr", "str", "format")):
            chain = " <- ".join(reversed([s for s in stack if s.startswith("slidepy")][-2:]))
            hits.setdefault(name, set()).add(chain)
event.register("numba:compile", L())
from click.testing import CliRunner
from slidepy.cli import main
pass
extra = []
for a in sys.argv[2:]:
    extra += ["--set", a]
r = CliRunner().invoke(main, ["train", "--config", sys.argv[1], "--out", tempfile.mkdtemp(), "--overwrite", "--no-progress", *extra])
print(r.output[-300:])
for k, v in hits.items():
    print(k, "<-", v)
