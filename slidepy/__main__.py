"""The `slidepy` command's entry point (also `python -m slidepy`).

Why not `slidepy.cli:main` directly: the console script imports the CLI module (click and its
own imports, about 30 ms) before any of its code runs, and a Ctrl-C in that window printed a
KeyboardInterrupt traceback of 16-32 lines. Here the import is inside a function that turns it
into the message and exit status an interrupted command gives everywhere else (EXIT_SIGINT).
Python's own start-up before this module (10-20 ms) is out of any package's reach.
"""

import sys

from .errors import EXIT_SIGINT  # light: the package's __init__ has imported it already


def run() -> None:
    try:
        from .cli import main
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(EXIT_SIGINT)
    main()


if __name__ == "__main__":
    run()
