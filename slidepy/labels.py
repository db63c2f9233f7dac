"""Label names: a file with one name per line (line i names label id i), as
../shared/data/DebianDeps/labels.txt, set by `data.labels` in a config or `--labels` on the
command line; or the names a model trained through `slidepy.sklearn` stored in its checkpoint
(`meta["label_names"]`, the estimator's `classes_`).

    names = read_label_names("labels.txt", n_labels=22875)
    format_prediction(ids_row, scores_row, names)   # "python3:0.91 libc6:0.88"
"""

from __future__ import annotations

import os

import numpy as np

from .errors import DataError

META_KEY = "label_names"


def read_label_names(path, n_labels: int | None = None) -> list[str]:
    """Names from `path`, one per line (trailing newline and carriage returns stripped; blank
    lines count, so ids stay aligned). With `n_labels`, the file must name exactly that many
    labels (a final empty line is tolerated): a DataError says which file and how many."""
    try:
        with open(path, encoding="utf-8-sig") as f:  # -sig: a byte-order mark is no part of label 0's name
            names = f.read().split("\n")
    except OSError as exc:
        raise DataError(f"{path}: cannot read label names: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: label names are not UTF-8 text (byte {exc.start})") from None
    if names and names[-1] == "":
        names.pop()
    names = [n.rstrip("\r") for n in names]
    if n_labels is not None and len(names) != n_labels:
        raise DataError(f"{path}: has {len(names)} label names but the model has {n_labels} labels")
    return names


def label_names_for(model, meta: dict | None = None, override=None) -> list[str] | None:
    """The label names of a loaded model, or None: `override` (a path, from --labels) first, then
    names stored in the checkpoint metadata, then the config's `data.labels`."""
    n_labels = model.engine.n_labels
    if override is not None:
        return read_label_names(override, n_labels)
    stored = (meta or {}).get(META_KEY)
    if stored is not None:
        if not isinstance(stored, list) or len(stored) != n_labels:
            raise DataError(f"the checkpoint's stored label names do not match its {n_labels} labels")
        return [str(s) for s in stored]
    path = getattr(model.config.data, "labels", None)
    if not path:
        return None
    path = os.fspath(path)
    if not os.path.isabs(path) and not os.path.exists(path):  # the run started from another directory
        raise DataError(f"{path}: cannot read label names: data.labels of the model's config is relative and not "
                        f"found from {os.getcwd()}; pass --labels FILE (or --ids)")
    return read_label_names(path, n_labels)


def format_prediction(ids: np.ndarray, scores: np.ndarray, names: list[str] | None = None) -> str:
    """One output line: `label:score` pairs, best first, ids replaced by names when given;
    padding ids (-1, fewer candidates than k under LSH) are left out."""
    if names is None:
        return " ".join(f"{i}:{s:.6g}" for i, s in zip(ids, scores) if i >= 0)
    return " ".join(f"{names[i]}:{s:.6g}" for i, s in zip(ids, scores) if i >= 0)
