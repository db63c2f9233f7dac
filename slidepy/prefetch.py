"""Software prefetch of weight rows: ask the memory system for a row a few iterations before a
loop reads it.

Why. The row-sparse loops (the output layer's forward over an active set, the optimizer over the
touched rows) visit rows scattered over layers of hundreds of MB: at the Amazon-670K shape a batch
touches ~60,000 of 670,091 rows, each 512 B of weights plus as much of each Adam moment. Every row
starts with a cache miss the hardware prefetcher cannot foresee (it follows strides within a page,
and the rows lie kilobytes apart), so a loop that computes little per row waits on DRAM latency,
one row at a time. Issuing the loads of the row `distance` iterations ahead keeps several misses in
flight while the current row is computed. In a standalone loop of 128-float dot products over
random rows of a 670,091 x 128 array (the 2-core VM): 41-57 ns a row without, 29-31 ns with a
distance of 4-16 rows.

`prefetch_row(a, i)` is an LLVM `llvm.prefetch` (read, keep in all cache levels) of every 64-byte
line of row i of the 2-D C-contiguous float32 array a. It is a hint: it never faults, even for a
row index outside the array (the address is computed, never dereferenced), and it changes no
result. Callers pass an in-range row anyway.
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

CACHE_LINE = 64  # bytes; x86-64 and most ARM cores
PREFETCH_ROWS = 4  # how far ahead the row loops prefetch (4-16 measured equal; see module doc)
PREFETCH_ITEMS = 8  # how far ahead the bucket scans prefetch the stamp of an item
# Arrays smaller than this are left to the caches: their rows are mostly cached already, and the
# hints only cost instructions. Bibtex's 3.7 MB Adam arrays (1,836 x 512 floats) took the
# optimizer from 0.27 to 0.37 s of 300 steps with prefetching; DebianDeps' (47-101 MB) and the
# 670K shape's (343 MB) gain from it.
PREFETCH_MIN_BYTES = 16 << 20
NEVER = 1 << 62  # a distance no loop reaches: no prefetch


@njit(cache=True)
def rows_ahead(array):
    """How many rows ahead a loop over scattered rows of `array` should prefetch: PREFETCH_ROWS
    for an array too large to stay cached (PREFETCH_MIN_BYTES), NEVER otherwise."""
    return PREFETCH_ROWS if array.size * array.itemsize >= PREFETCH_MIN_BYTES else NEVER


@intrinsic
def prefetch_row(typingctx, array, row):
    """Prefetch every cache line of row `row` of the 2-D C-contiguous array `array` (a hint)."""
    if not (isinstance(array, types.Array) and array.ndim == 2 and array.layout == "C"
            and isinstance(row, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        array_type, row_type = signature.args
        ary = context.make_array(array_type)(context, builder, args[0])
        intp = context.get_value_type(types.intp)
        index = context.cast(builder, args[1], row_type, types.intp)
        row_bytes = builder.extract_value(ary.strides, 0)
        start = builder.gep(builder.bitcast(ary.data, ir.IntType(8).as_pointer()), [builder.mul(index, row_bytes)])
        with cgutils.for_range_slice(builder, ir.Constant(intp, 0), row_bytes, ir.Constant(intp, CACHE_LINE),
                                     intp=intp) as (offset, _):
            _prefetch(builder, builder.gep(start, [offset]))
        return context.get_dummy_value()

    return types.void(array, row), codegen


@intrinsic
def prefetch_item(typingctx, array, index):
    """Prefetch the cache line holding array[index] of the 1-D contiguous array `array` (a hint)."""
    if not (isinstance(array, types.Array) and array.ndim == 1 and array.layout in "CF"
            and isinstance(index, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        array_type, index_type = signature.args
        ary = context.make_array(array_type)(context, builder, args[0])
        i = context.cast(builder, args[1], index_type, types.intp)
        item_bytes = builder.extract_value(ary.strides, 0)
        i8_ptr = ir.IntType(8).as_pointer()
        address = builder.gep(builder.bitcast(ary.data, i8_ptr), [builder.mul(i, item_bytes)])
        _prefetch(builder, address)
        return context.get_dummy_value()

    return types.void(array, index), codegen


def _prefetch(builder, address):
    """Emit llvm.prefetch(address): a read, kept in every cache level, of the data cache."""
    i8_ptr = ir.IntType(8).as_pointer()
    i32 = ir.IntType(32)
    fn = builder.module.declare_intrinsic("llvm.prefetch", [i8_ptr], ir.FunctionType(ir.VoidType(), [i8_ptr, i32, i32, i32]))
    builder.call(fn, [address, i32(0), i32(3), i32(1)])
