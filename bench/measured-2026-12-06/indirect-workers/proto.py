import os, sys, time, tempfile
os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp()
import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic
from numba.core import cgutils

@intrinsic
def call_at(typingctx, worker, address, args):
    """worker: the dispatcher (typing only); address int64; args: tuple of the worker's args."""
    if not isinstance(worker, types.Dispatcher) or not isinstance(args, types.BaseTuple):
        return None
    argtys = tuple(args.types)
    wsig = typingctx.resolve_function_type(worker, argtys, {})
    resty = wsig.return_type
    def codegen(context, builder, signature, llargs):
        _, addr, argtuple = llargs
        vals = [builder.extract_value(argtuple, i) for i in range(len(argtys))]
        fnty = context.call_conv.get_function_type(resty, argtys)
        fnptr = builder.inttoptr(addr, fnty.as_pointer())
        status, res = context.call_conv.call_function(builder, fnptr, resty, argtys, vals)
        with cgutils.if_unlikely(builder, status.is_error):
            context.call_conv.return_status_propagate(builder, status)
        return res
    return resty(worker, address, args), codegen

from gen import worker

@njit(parallel=True, cache=True)
def driver_direct(a, b, out):
    for t in prange(out.shape[0]):
        out[t] = worker(a[t], b[t], a.shape[1])

@njit(parallel=True, cache=True)
def driver_indirect(a, b, out, addr):
    for t in prange(out.shape[0]):
        out[t] = call_at(worker, addr, (a[t], b[t], a.shape[1]))

def address(disp, argtypes):
    disp.compile(argtypes)
    cres = disp.overloads[tuple(argtypes)]
    return cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name)

a = np.random.rand(4, 100); b = np.random.rand(4, 100); out = np.zeros(4)
t0 = time.perf_counter(); worker(a[0].copy(), b[0].copy(), 100); print("worker", time.perf_counter() - t0)
mode = sys.argv[1]
t0 = time.perf_counter()
if mode == "direct":
    driver_direct(a.copy(), b.copy(), out)
else:
    from numba import typeof
    ad = address(worker, (typeof(a[0]), typeof(b[0]), types.int64))
    driver_indirect(a.copy(), b.copy(), out, ad)
print(mode, "driver compile+run", time.perf_counter() - t0, out)
