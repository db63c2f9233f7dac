"""Calls from a parallel driver to its serial worker through the worker's address.

Why. numba links every function a kernel calls into the kernel's own code, and LLVM optimises and
emits the callee again inside each caller. A parallel driver is two callers deep (its prange body
becomes a gufunc, and the driver links that), so the per-chunk worker, with everything it calls,
was compiled three times over: on a cold start the training driver took 10.8 s of its own on top
of its callees, the inference driver 7.0 s, of the ~28 s the quick start spent compiling.

A call through an address links nothing: the driver compiles to its own few lines, and the worker
compiles once, on its own, and is cached on its own like any kernel. The quick start's compile
work fell from 45 to 34 s, its cold start from 31.5-33.7 to 24.4-25.9 s on 2 cores
(bench/measured-2026-12-06/indirect-workers/).

How. `worker_table(worker, argtypes)` compiles the worker for the argument types its driver will
pass (or loads it from numba's cache) and returns the address of the compiled code beside a
fingerprint of those types. The driver takes the table as an argument and calls
`call_worker(worker, table, args)`, which lowers as a call of the address with the tuple `args`, in
numba's own calling convention (so the worker's exceptions reach the driver as from a direct call;
inside a prange body, as numba's parallel regions pass exceptions on: wrapped in a SystemError,
and one raised on another thread than the caller's may be lost, so slidepy's chunk workers raise
none, and their drivers get their tables from kernels.chunk_worker for the very arguments).
The address is an argument, never a constant of the compiled driver, so the driver caches like any
kernel; the fingerprint guards it: a table made for other types raises instead of running code that
would read its arguments wrongly.

Workers return nothing (their results go into arrays), so typing a driver needs nothing of its
worker: the two compile independently, and a second process can compile the driver while this
one compiles the worker (precompile.py).
"""

from __future__ import annotations

import zlib

import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

# type_fingerprint(value): numba's own key for the type of a value (what its dispatchers look their
# compiled versions up by), cheap to take; kernels.chunk_worker keys its tables by it. Not the
# `fingerprint` of a list of numba types below, which a table carries.
try:
    from numba._dispatcher import compute_fingerprint as type_fingerprint
except ImportError:  # a private name: should a numba release move it, every lookup types its arguments in full
    def type_fingerprint(value):
        raise TypeError("no type fingerprint in this numba")

# worker_table's layout: [address, fingerprint]
_ADDRESS, _FINGERPRINT = 0, 1


def fingerprint(argtypes) -> int:
    """A number that differs between argument type lists (crc32 of their names; the same in every
    process, unlike Python's hash)."""
    return zlib.crc32("|".join(str(t) for t in argtypes).encode())


def worker_table(worker, argtypes: tuple) -> np.ndarray:
    """(2,) int64: the address of `worker` (an @njit dispatcher) compiled for the numba types
    `argtypes`, and their fingerprint; what a driver passes to call_worker. Compiles the worker
    first, or loads it from numba's cache."""
    argtypes = tuple(argtypes)
    worker.compile(argtypes)
    compiled = worker.overloads[argtypes]
    if compiled.signature.return_type != types.none:  # call_worker passes no room for a result
        raise TypeError(f"worker_table: {worker.py_func.__qualname__} returns "
                        f"{compiled.signature.return_type}; a worker must return nothing")
    address = compiled.library.get_pointer_to_function(compiled.fndesc.llvm_func_name)
    return np.array([address, fingerprint(argtypes)], np.int64)


@intrinsic
def call_worker(typingctx, worker, table, args):
    """worker(*args) through the address in `table` (worker_table's, for these argument types).
    `worker` only names the call: it is neither compiled nor linked in here. Raises ValueError
    where the table was made for other argument types."""
    if not (isinstance(worker, types.Dispatcher) and isinstance(args, types.BaseTuple)
            and isinstance(table, types.Array) and table.dtype == types.int64 and table.ndim == 1):
        return None
    given = tuple(args.types)
    argtypes = tuple(types.unliteral(t) for t in given)
    restype = types.none
    expected = fingerprint(argtypes)

    def codegen(context, builder, signature, llargs):
        _, table_value, arg_tuple = llargs
        entries = context.make_array(signature.args[1])(context, builder, value=table_value)
        address = builder.load(cgutils.gep(builder, entries.data, _ADDRESS))
        stamp = builder.load(cgutils.gep(builder, entries.data, _FINGERPRINT))
        mismatch = builder.icmp_unsigned("!=", stamp, stamp.type(expected))
        with cgutils.if_unlikely(builder, mismatch):
            context.call_conv.return_user_exc(builder, ValueError, (
                "call_worker: the worker table was made for other argument types than this call's",))
        values = [context.cast(builder, builder.extract_value(arg_tuple, i), given[i], argtypes[i])
                  for i in range(len(argtypes))]
        function_type = context.call_conv.get_function_type(restype, argtypes)
        function = builder.inttoptr(address, function_type.as_pointer())
        status, result = context.call_conv.call_function(builder, function, restype, argtypes, values)
        with cgutils.if_unlikely(builder, status.is_error):
            context.call_conv.return_status_propagate(builder, status)
        return result

    return restype(worker, table, args), codegen
