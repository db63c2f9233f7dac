"""Limits that more than one module enforces, named once. Imports nothing of ours, so any module
(config, hashing, tables, cli, the kernels) can use it without an import cycle.

K hashes per table, L tables, b WTA/DWTA bin size, R = 2**range_pow buckets per table, C bucket
capacity.
"""

MAX_INT = 2**31 - 1        # no int a user sets may exceed this: the kernels index with int32 and
                           # seeds are mixed in uint64
MAX_K = 32                 # hashes per table: K codes of up to log2(b) bits are folded into 64 bits
MAX_L = 512                # tables
MIN_BIN_SIZE = 2           # WTA/DWTA bin size b, a power of two
MAX_BIN_SIZE = 256
MIN_RANGE_POW = 1
MAX_RANGE_POW = 24         # R = 2**24 buckets; L * R * (C + 1) int32 is already GiBs per layer
MIN_BUCKET_CAPACITY = 1    # slots per bucket C, a power of two (buckets are rings)
MAX_BUCKET_CAPACITY = 4096
