"""Label names: `--labels`, names stored in a model, and the config's `data.labels`."""

from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from slidepy.cli import main
from slidepy.errors import DataError
from slidepy.labels import format_prediction, label_names_for, read_label_names
from slidepy.text import TextFeatures


def test_read_label_names(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("libc6\r\npython3\n\nperl\n")
    assert read_label_names(path) == ["libc6", "python3", "", "perl"]
    assert read_label_names(path, 4) == ["libc6", "python3", "", "perl"]
    with pytest.raises(DataError, match="has 4 label names but the model has 5"):
        read_label_names(path, 5)
    with pytest.raises(DataError, match="cannot read"):
        read_label_names(tmp_path / "missing.txt")
    path.write_bytes(b"\xef\xbb\xbfalpha\r\nbeta\r\n")  # a byte-order mark, as some editors write
    assert read_label_names(path, 2) == ["alpha", "beta"]


def test_names_from_config_data_labels(tmp_path):
    """`data.labels` is read with getattr, so configs without the key still work."""
    path = tmp_path / "labels.txt"
    path.write_text("a\nb\nc\n")
    with_key = SimpleNamespace(engine=SimpleNamespace(n_labels=3),
                               config=SimpleNamespace(data=SimpleNamespace(labels=str(path))))
    without = SimpleNamespace(engine=SimpleNamespace(n_labels=3), config=SimpleNamespace(data=SimpleNamespace()))
    assert label_names_for(with_key) == ["a", "b", "c"]
    assert label_names_for(without) is None
    assert label_names_for(without, {"label_names": ["x", "y", "z"]}) == ["x", "y", "z"]
    assert label_names_for(with_key, {"label_names": ["x", "y", "z"]}, override=path) == ["a", "b", "c"]
    line = format_prediction(np.array([2, 0, -1]), np.array([0.5, 0.25, -np.inf]), ["a", "b", "c"])
    assert line == "c:0.5 a:0.25"


def test_a_relative_data_labels_missing_from_here_says_what_to_pass(tmp_path, monkeypatch):
    """A model's config keeps data.labels as written; predicting from another directory names the
    directory it looked from and the option that fixes it, rather than a bare 'no such file'."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "labels.txt").write_text("a\nb\nc\n")
    model = SimpleNamespace(engine=SimpleNamespace(n_labels=3),
                            config=SimpleNamespace(data=SimpleNamespace(labels="labels.txt")))
    monkeypatch.chdir(tmp_path / "run")
    assert label_names_for(model) == ["a", "b", "c"]
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=rf"^labels\.txt: cannot read label names: data\.labels of the model's config "
                                        rf"is relative and not found from {tmp_path}; pass --labels FILE"):
        label_names_for(model)


def test_label_names_of_the_wrong_count_are_refused_before_training(tiny_config, tmp_path):
    from slidepy import Trainer, config_from_dict

    data = tmp_path / "train.txt"
    CliRunner().invoke(main, ["datagen", "--out", str(data), "--n-train", "20", "--features", "30", "--labels", "6"])
    names = tmp_path / "names.txt"
    names.write_text("a\nb\n")
    tiny_config["data"] = {"train": str(data), "labels": str(names)}
    with pytest.raises(DataError, match=rf"^data\.labels: {names}: has 2 label names but the model has 6 labels"):
        Trainer(config_from_dict(tiny_config), progress=False)
    assert not (tmp_path / "run").exists()


def test_predict_writes_names(tiny_config, tmp_path):
    import yaml

    cfg = tmp_path / "tiny.yaml"
    tiny_config["training"]["epochs"] = 1
    cfg.write_text(yaml.safe_dump(tiny_config))
    runner = CliRunner()
    out = tmp_path / "run"
    assert runner.invoke(main, ["train", "--config", str(cfg), "--out", str(out), "--no-progress"]).exit_code == 0
    checkpoint = sorted((out / "checkpoints").glob("step-*.npz"))[-1]
    data = tmp_path / "test.txt"
    runner.invoke(main, ["datagen", "--out", str(tmp_path / "tr.txt"), "--test-out", str(data), "--n-train", "5",
                         "--n-test", "6", "--features", "400", "--labels", "150"])
    names = tmp_path / "labels.txt"
    names.write_text("".join(f"pkg{i}\n" for i in range(150)))
    res = runner.invoke(main, ["predict", "--checkpoint", str(checkpoint), "--data", str(data), "--top-k", "2",
                               "--labels", str(names)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert len(lines) == 6 and all(tok.startswith("pkg") for line in lines for tok in line.split())
    ids = runner.invoke(main, ["predict", "--checkpoint", str(checkpoint), "--data", str(data), "--top-k", "2"])
    assert [line.replace("pkg", "") for line in lines] == ids.output.splitlines()
    wrong = tmp_path / "short.txt"
    wrong.write_text("a\nb\n")
    res = runner.invoke(main, ["predict", "--checkpoint", str(checkpoint), "--data", str(data), "--labels", str(wrong)])
    assert res.exit_code == 2 and "has 2 label names but the model has 150 labels" in res.output
    res = runner.invoke(main, ["predict", "--checkpoint", str(checkpoint)])
    assert res.exit_code == 2 and "--data FILE or --text TEXT" in res.output


def test_text_features_analyzer():
    feats = TextFeatures(vocabulary=["cafe", "cafe latte", "latte"], idf=None, strip_accents="unicode",
                         ngram_range=(1, 2), norm=None, stop_words=["the"])
    assert feats.analyze("The Café latte") == ["cafe", "latte", "cafe latte"]
    indptr, indices, values = feats.transform(["the café latte latte", "nothing known"])
    assert indptr.tolist() == [0, 3, 3] and indices.tolist() == [0, 1, 2] and values.tolist() == [1.0, 1.0, 2.0]
    again = TextFeatures.from_meta(feats.to_meta())
    assert again.analyze("The Café latte") == feats.analyze("The Café latte")
