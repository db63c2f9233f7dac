"""pages.py: the layers' arrays are asked onto huge pages, a step's temporaries are not."""

import numpy as np
import pytest

from slidepy.network import make_resident
from slidepy.pages import HUGE_PAGE_MIN_BYTES, NUMPY_HUGEPAGE_SETTER, advise_huge_pages, temporaries_on_small_pages


def _anon_huge_bytes(array) -> int:
    """AnonHugePages of the mapping that holds the middle of array's data (/proc/self/smaps; the
    advice splits off the partial page at the start into a mapping of its own)."""
    address, found = array.ctypes.data + array.nbytes // 2, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(x, 16) for x in head.split("-"))
                found = lo <= address < hi
            elif found and line.startswith("AnonHugePages:"):
                return int(line.split()[1]) * 1024
    return 0


def _huge_pages_setting() -> str:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return f.read().split("[")[1].split("]")[0]
    except (OSError, IndexError):
        return "never"


@pytest.mark.skipif(_huge_pages_setting() == "never", reason="transparent huge pages are off or absent")
def test_resident_arrays_are_asked_onto_huge_pages():
    """make_resident advises huge pages before it writes a large array: a 64 MB np.zeros array then
    holds some, where written without the advice it holds none under the `madvise` setting. Small
    arrays are only zeroed."""
    advised = np.zeros((1 << 24,), np.float32)
    make_resident(advised)
    assert not advised.any()
    assert _anon_huge_bytes(advised) > 0
    if _huge_pages_setting() == "madvise":
        with temporaries_on_small_pages():  # numpy's own advice off (numpy 2 gives it to np.zeros too)
            plain = np.zeros((1 << 24,), np.float32)
            plain.fill(0)
        assert _anon_huge_bytes(plain) == 0
    small = np.ones(HUGE_PAGE_MIN_BYTES // 8, np.float32)
    assert not advise_huge_pages(small)
    make_resident(small)
    assert not small.any()


@pytest.mark.skipif(NUMPY_HUGEPAGE_SETTER is None, reason="this numpy has no huge-page switch")
def test_temporaries_stay_off_huge_pages_inside_the_block_and_numpy_gets_its_setting_back():
    setter = NUMPY_HUGEPAGE_SETTER
    for before in (True, False):
        setter(before)
        with temporaries_on_small_pages():
            assert setter(False) is False  # off inside (reading it by setting it again)
        assert setter(before) is before  # restored on the way out
        with pytest.raises(RuntimeError):
            with temporaries_on_small_pages():
                raise RuntimeError("a failing step")
        assert setter(before) is before  # and restored when the block raises
    setter(True)
    if _huge_pages_setting() == "madvise":
        with temporaries_on_small_pages():
            temporary = np.empty((1 << 24,), np.float32)
            temporary.fill(1)
        assert _anon_huge_bytes(temporary) == 0
