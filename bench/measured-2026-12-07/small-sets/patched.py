"""usage: NAME=value ... patched.py slidepy-args: the CLI with slidepy.reranker constants from the environment."""
import os
import sys
from slidepy import reranker
for name in ("MIN_VALIDATION", "MAX_VALIDATION_SHARE", "VALIDATION_SHARE", "VALIDATION_SAMPLES", "RANDOM_PAIRS"):
    if name in os.environ:
        setattr(reranker, name, type(getattr(reranker, name))(os.environ[name]))
from slidepy.__main__ import run
sys.argv[0] = "slidepy"
run()
