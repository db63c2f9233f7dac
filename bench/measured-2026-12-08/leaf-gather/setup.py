"""What the probes here share: a run's final network and the leaves' training set on its training
split less the slice the run held out (as Model.fit_reranker builds it)."""
import glob, time
from slidepy.data import load_dataset
from slidepy.model import Model, training_rows
from slidepy import reranker as R


def network_and_leaf_set(run, train_path):
    """(model, train, rows, shortlists, negatives, seconds to build the last three)."""
    data = load_dataset(train_path)
    model = Model.load(max(glob.glob(f"{run}/checkpoints/step-*.npz")))[0]
    train = data.subset(training_rows(data.n_samples, R.validation_rows(data, 0)))
    t = time.perf_counter()
    rows, shortlists, negatives = model.leaf_training_set(train)
    return model, train, rows, shortlists, negatives, time.perf_counter() - t
