"""Which memory sits on huge pages: the layers' long-lived arrays, not a step's temporaries.

Why. The optimizer and the output layer visit rows scattered over arrays of hundreds of MB; with
4 KB pages nearly every row costs a TLB miss and a page walk per array. Linux backs memory with
2 MB pages where a program asks (`madvise(MADV_HUGEPAGE)`, under the common `madvise` setting of
transparent huge pages), but a fresh huge page costs a 2 MB zeroing on its first write, and
finding one may mean compacting memory first. numpy asks for every array of 4 MB or more it
makes with np.empty (not np.zeros, which comes from calloc), so before this module the weights
sat on huge pages, the Adam moments and gradient rows on small ones, and every step's large
temporaries (batch products, cluster scores, rebuild blocks) faulted in fresh huge pages.

Measured on the 2-core VM (`scripts/profile_step.py`, 2 threads; 670K: the bench's `lsh`
settings, 300 steps, 1 thread; interleaved runs):
  * huge pages for the moments as well (temporaries as numpy does): the 670K optimizer 6.83-6.90 ->
    6.21-6.33 s, but DebianDeps' steps 5,729-5,880 -> 5,036-5,073 samples/s;
  * no huge pages at all for the process (prctl): DebianDeps 5,860-5,870 against 5,295-5,439;
  * the layer arrays on huge pages and the temporaries on small ones (this module): DebianDeps
    5,940-5,990 against 5,624-5,873, and the 670K optimizer 5.92-6.02 against 6.37-6.44 s.

So the engine asks for huge pages for the arrays it keeps (advise_huge_pages, before their first
write) and turns numpy's own advice off while it trains (temporaries_on_small_pages), restoring it
afterwards so the rest of the program keeps numpy's behaviour.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys

import numpy as np

HUGE_PAGE_MIN_BYTES = 4 << 20  # numpy's own threshold for the same advice
_MADV_HUGEPAGE = 14  # <sys/mman.h>, Linux
_PAGE = 4096


def advise_huge_pages(array: np.ndarray) -> bool:
    """Ask Linux to back a large array's not-yet-written pages with 2 MB pages (a hint, ignored off
    Linux or where transparent huge pages are off). Call it before the pages are first written.
    Returns whether the advice was taken."""
    if not sys.platform.startswith("linux") or array.nbytes < HUGE_PAGE_MIN_BYTES:
        return False
    start = (array.ctypes.data + _PAGE - 1) & ~(_PAGE - 1)
    end = (array.ctypes.data + array.nbytes) & ~(_PAGE - 1)
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return False
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return madvise(start, end - start, _MADV_HUGEPAGE) == 0


def _find_numpy_hugepage_setter():
    """numpy's switch for its own huge-page advice (private in 1.x and 2.x alike), or None."""
    for name in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            module = sys.modules.get(name) or __import__(name, fromlist=["_set_madvise_hugepage"])
        except ImportError:
            continue
        setter = getattr(module, "_set_madvise_hugepage", None)
        if setter is not None:
            return setter
    return None


# numpy's switch, or None where this numpy has none. Looked up once: temporaries_on_small_pages
# runs around every training step.
NUMPY_HUGEPAGE_SETTER = _find_numpy_hugepage_setter()


@contextlib.contextmanager
def temporaries_on_small_pages():
    """numpy's huge-page advice off for the block (the arrays numpy makes inside it stay on small
    pages), then back to what it was."""
    setter = NUMPY_HUGEPAGE_SETTER
    if setter is None:
        yield
        return
    previous = setter(False)
    try:
        yield
    finally:
        setter(bool(previous))
