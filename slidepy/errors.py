"""The project's own exception types.

Every failure a user can cause (a bad config, a bad data line, a foreign checkpoint, a run that
diverged) is raised as a `SlidepyError` subclass whose message says where and what; the CLI prints
it without a traceback and exits non-zero.
"""


# The exit status of a command stopped by Ctrl-C (128 + SIGINT), as shells report it; the entry
# point (__main__) gives it before the CLI has loaded, the CLI after.
EXIT_SIGINT = 130


class StopNow(KeyboardInterrupt):
    """A second SIGINT or SIGTERM while a stop is under way: out at once, unsaved. It carries the
    signal so that the exit status names it (130 after Ctrl-C, 143 after a scheduler's SIGTERM);
    as a KeyboardInterrupt it passes every handler that lets a Ctrl-C through."""

    def __init__(self, signum: int):
        super().__init__()
        self.signum = signum


def interrupt_status(exc: KeyboardInterrupt) -> int:
    """The exit status of a process ended by `exc`: 128 + its signal, SIGINT's for a plain one."""
    return 128 + exc.signum if isinstance(exc, StopNow) else EXIT_SIGINT


class SlidepyError(Exception):
    """Base class of every error slidepy raises on purpose."""


class ConfigError(SlidepyError):
    """A config key is unknown, has the wrong type, or is out of range."""


class DataError(SlidepyError):
    """A data file cannot be read: names the file, the 1-based line and the reason."""


class CheckpointError(SlidepyError):
    """A checkpoint is missing, truncated, foreign, or does not match the config."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (disk full, permissions): the machine's failure, not the
    user's input (the CLI exits 1 for it, as for any OS error)."""


class NumericalError(SlidepyError):
    """Loss or weights became NaN/inf: names the step and the layer."""


class TrainingInterrupted(SlidepyError):
    """Training stopped on SIGINT/SIGTERM after saving a checkpoint."""

    def __init__(self, message: str, checkpoint: str | None, signum: int):
        super().__init__(message)
        self.checkpoint = checkpoint
        self.signum = signum
