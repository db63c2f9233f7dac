"""`slidepy import`: a dense MLP from PyTorch or an .npz becomes a slidepy model whose exact
scores equal the dense forward pass; files that would unpickle code are refused."""

import json
import re
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from slidepy.cli import main
from slidepy.data import write_dataset
from slidepy.importer import ImportErrorSlidepy, import_mlp, read_mlp
from slidepy.synthetic import make_synthetic
from slidepy.trainer import Trainer

F, H1, H2, N = 120, 24, 16, 90


def _dense_logits(layers, ds):
    """NumPy reference: densify X, then Linear/ReLU/.../Linear with (out, in) weights."""
    x = np.zeros((ds.n_samples, ds.n_features), np.float64)
    for i in range(ds.n_samples):
        lo, hi = ds.x_indptr[i], ds.x_indptr[i + 1]
        np.add.at(x[i], ds.x_indices[lo:hi], ds.x_values[lo:hi])
    for index, (w, b) in enumerate(layers):
        x = x @ w.T.astype(np.float64) + b
        if index < len(layers) - 1:
            x = np.maximum(x, 0.0)
    return x


@pytest.fixture(scope="module")
def data():
    return make_synthetic(300, 80, F, N, nnz_per_sample=8, labels_per_sample=(1, 2), seed=4)


def _random_layers(seed=0):
    rng = np.random.default_rng(seed)
    dims = [F, H1, H2, N]
    return [(rng.normal(0, 0.3, (dims[i + 1], dims[i])).astype(np.float32),
             rng.normal(0, 0.1, dims[i + 1]).astype(np.float32)) for i in range(3)]


def _check_model(path, layers, ds):
    trainer = Trainer.load(path)
    ids, scores = trainer.predict(ds, k=5)
    ref = _dense_logits(layers, ds)
    np.testing.assert_allclose(scores, np.take_along_axis(ref, ids, axis=1), rtol=1e-4, atol=1e-4)
    best = np.sort(ref, axis=1)[:, ::-1][:, :5]
    np.testing.assert_allclose(scores, best, rtol=1e-4, atol=1e-4)


def test_npz_import_equals_dense_forward(tmp_path, data):
    _, test = data
    layers = _random_layers()
    src = tmp_path / "mlp.npz"
    np.savez(src, **{f"W{i}": w for i, (w, _) in enumerate(layers)}, **{f"b{i}": b for i, (_, b) in enumerate(layers)})
    summary = import_mlp(src, tmp_path / "model.npz")
    assert summary["hidden"] == [H1, H2] and summary["n_features"] == F and summary["n_labels"] == N
    _check_model(tmp_path / "model.npz", layers, test)


def test_in_out_layout_is_transposed(tmp_path, data):
    """torch_baseline's EmbeddingBag table w1 is (n_features, hidden): oriented by its bias."""
    layers = _random_layers(1)[1:]  # H1 -> H2 -> N
    rng = np.random.default_rng(2)
    w1 = rng.normal(0, 0.3, (F, H1)).astype(np.float32)  # (in, out)
    b1 = np.zeros(H1, np.float32)
    src = tmp_path / "baseline.npz"
    np.savez(src, w1=w1, b1=b1, w2=layers[0][0], b2=layers[0][1], w3=layers[1][0], b3=layers[1][1])
    import_mlp(src, tmp_path / "model.npz")
    _check_model(tmp_path / "model.npz", [(w1.T, b1), *layers], data[1])


def test_torch_sequential_and_state_dict(tmp_path, data):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(F, H1), torch.nn.ReLU(), torch.nn.Dropout(0.1),
                                torch.nn.Linear(H1, H2), torch.nn.ReLU(), torch.nn.Linear(H2, N))
    layers = [(m.weight.detach().numpy(), m.bias.detach().numpy()) for m in model if isinstance(m, torch.nn.Linear)]
    torch.save(model, tmp_path / "seq.pt")
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    for name in ("seq.pt", "sd.pt"):
        import_mlp(tmp_path / name, tmp_path / "model.npz")
        _check_model(tmp_path / "model.npz", layers, data[1])


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


class _RunsAShell:
    def __reduce__(self):
        import os

        return (os.system, ("echo this must never run",))


def test_a_pickle_that_calls_a_blocked_function_is_refused_not_called_damaged(tmp_path, capfd):
    """torch names a blocked module's function "unsupported GLOBAL posix.system ... is blocked",
    not "Unsupported global": still a refusal, in both file formats."""
    torch = pytest.importorskip("torch")
    for zip_format in (True, False):
        path = tmp_path / f"shell-{zip_format}.pt"
        torch.save({"0.weight": torch.zeros(2, 2), "x": _RunsAShell()}, path,
                   _use_new_zipfile_serialization=zip_format)
        with pytest.raises(ImportErrorSlidepy, match=r"refused: loading it would run code"):
            read_mlp(path)
    assert "this must never run" not in capfd.readouterr().out


def test_a_whole_sequential_with_another_layer_names_the_layer(tmp_path):
    """torch's safe unpickler stops at a Tanh or LayerNorm class before slidepy sees the layers:
    the message names the layer, as for a Sequential in memory, not a security refusal."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    for layer, name in ((nn.Tanh(), "Tanh"), (nn.LayerNorm(16), "LayerNorm")):
        path = tmp_path / f"{name}.pt"
        torch.save(nn.Sequential(nn.Linear(50, 16), layer, nn.Linear(16, 30)), path)
        with pytest.raises(ImportErrorSlidepy, match=rf"^{re.escape(str(path))}: the model holds a {name} layer, "
                                                     r"which is not supported \(only Linear and ReLU"):
            read_mlp(path)


def test_a_torchscript_archive_is_refused_without_torchs_advice_to_run_it(tmp_path, capfd):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    path = tmp_path / "scripted.pt"
    torch.jit.script(nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))).save(str(path))
    with pytest.raises(ImportErrorSlidepy, match=r"a TorchScript archive, which slidepy does not load .*"
                                                 r"torch.save\(model.state_dict\(\), path\)$") as info:
        read_mlp(path)
    assert "weights_only" not in str(info.value) and "TorchScript" not in capfd.readouterr().err


def test_pickled_payload_is_refused(tmp_path, capsys):
    npz = tmp_path / "evil.npz"
    np.savez(npz, W0=np.array([_Payload()], dtype=object), b0=np.zeros(1))
    with pytest.raises(ImportErrorSlidepy, match="refused"):
        read_mlp(npz)
    torch = pytest.importorskip("torch")
    pt = tmp_path / "evil.pt"
    torch.save({"0.weight": torch.zeros(2, 2), "x": _Payload()}, pt)
    with pytest.raises(ImportErrorSlidepy, match="refused.*weights_only"):
        read_mlp(pt)
    assert "this must never run" not in capsys.readouterr().out


def test_missing_torch_says_what_to_install(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    path.write_bytes(b"not really")
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    with pytest.raises(ImportErrorSlidepy, match=r"pip install -e '\.\[torch\]'"):
        read_mlp(path)


def test_bad_architectures(tmp_path):
    rng = np.random.default_rng(0)
    one = tmp_path / "one.npz"
    np.savez(one, W0=rng.normal(size=(5, 7)).astype(np.float32), b0=np.zeros(5, np.float32))
    with pytest.raises(ImportErrorSlidepy, match="at least one hidden"):
        read_mlp(one)
    broken = tmp_path / "broken.npz"
    np.savez(broken, W0=np.ones((6, 7), np.float32), b0=np.zeros(6, np.float32), W1=np.ones((4, 5), np.float32))
    with pytest.raises(ImportErrorSlidepy, match="does not fit"):
        read_mlp(broken)
    odd = tmp_path / "odd.npz"
    np.savez(odd, W0=np.ones((6, 7), np.float32), scale=np.ones(3))
    with pytest.raises(ImportErrorSlidepy, match="neither a weight nor a bias"):
        read_mlp(odd)


def test_files_of_other_kinds_are_one_line_saying_what_they_are_not(tmp_path):
    """No traceback and no "would run code" for a file that is only of another kind or damaged."""
    rng = np.random.default_rng(1)
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"abc")
    npy_as_npz = tmp_path / "arr.npz"
    with open(npy_as_npz, "wb") as f:
        np.save(f, rng.normal(size=(3, 4)))
    csv_npz = tmp_path / "csv.npz"
    csv_npz.write_text("1,2,3\n")
    empty = tmp_path / "empty.pt"  # a torch name: still "empty", before torch is asked
    empty.write_bytes(b"")
    cases = [(onnx, "neither a PyTorch file (.pt) nor a NumPy"),
             (npy_as_npz, "a single .npy array, not an .npz"), (csv_npz, "neither a PyTorch file"),
             (empty, "empty")]
    runner = CliRunner()
    for path, message in cases:
        res = runner.invoke(main, ["import", str(path), "--out", str(tmp_path / "out.npz")])
        assert res.exit_code == 2 and "Traceback" not in res.output, (path, res.output)
        assert res.output.startswith(f"error: {path}: ") and message in res.output, (path, res.output)
        assert "run code" not in res.output
    torch = pytest.importorskip("torch")  # a .pt name sends the file to torch.load
    text = tmp_path / "model.pt"
    text.write_text("hello, this is text\n")
    res = runner.invoke(main, ["import", str(text), "--out", str(tmp_path / "out.npz")])
    assert res.exit_code == 2 and res.output.startswith(f"error: {text}: not a PyTorch file, or a damaged one"), \
        res.output
    layers = _random_layers(5)
    named = tmp_path / "torch-named.npz"  # a torch.save file with an .npz name is read as what it is
    torch.save({f"{i}.weight": torch.from_numpy(w) for i, (w, _) in enumerate(layers)}, named)
    assert len(read_mlp(named)) == 3
    try:
        from safetensors.torch import save_file
    except ImportError:
        save_file = None
    if save_file is not None:  # neither zip nor pickle: known by its name, and torch.load reads it
        st = tmp_path / "model.safetensors"
        save_file({f"{i}.weight": torch.from_numpy(w) for i, (w, _) in enumerate(layers)}, st)
        assert len(read_mlp(st)) == 3
    checkpoint = tmp_path / "checkpoint.pt"
    torch.save({"model": {"0.weight": torch.zeros(2, 2)}, "epoch": 3}, checkpoint)
    with pytest.raises(ImportErrorSlidepy, match=rf"^{checkpoint}: 'model' holds a mapping.*model.state_dict\(\)"):
        read_mlp(checkpoint)


def test_malformed_arrays_are_refused_naming_the_file(tmp_path):
    layers = _random_layers(6)
    arrays = {f"W{i}": w for i, (w, _) in enumerate(layers)} | {f"b{i}": b for i, (_, b) in enumerate(layers)}
    square_bias = tmp_path / "bias2d.npz"
    np.savez(square_bias, **(arrays | {"b0": np.zeros((4, 6), np.float32)}))  # 24 values for H1 = 24 neurons
    with pytest.raises(ImportErrorSlidepy, match=rf"^{square_bias}: layer 0 .*bias of shape \(4, 6\), not a vector"):
        read_mlp(square_bias)
    row_bias = tmp_path / "bias-row.npz"
    np.savez(row_bias, **(arrays | {"b0": layers[0][1][None, :]}))  # (1, n) is a vector
    np.testing.assert_array_equal(read_mlp(row_bias)[0][1], layers[0][1])
    twice = tmp_path / "twice.npz"
    np.savez(twice, **arrays, weight0=layers[0][0])
    with pytest.raises(ImportErrorSlidepy, match=rf"^{twice}: 'W0' and 'weight0' both name the weight of layer 0"):
        read_mlp(twice)


def test_weights_alone_are_read_with_relu_and_the_import_says_so(tmp_path):
    layers = _random_layers(7)
    src = tmp_path / "mlp.npz"
    np.savez(src, **{f"W{i}": w for i, (w, _) in enumerate(layers)}, **{f"b{i}": b for i, (_, b) in enumerate(layers)})
    res = CliRunner().invoke(main, ["import", str(src), "--out", str(tmp_path / "m.npz")])
    assert res.exit_code == 0 and f"note: {src} holds weights alone, no activations: read as Linear, ReLU" in res.output
    torch = pytest.importorskip("torch")
    whole = tmp_path / "whole.pt"
    model = torch.nn.Sequential(torch.nn.Linear(F, H1), torch.nn.ReLU(), torch.nn.Linear(H1, N))
    torch.save(model, whole)
    assert import_mlp(whole, tmp_path / "w.npz")["relu_assumed"] is False
    assert import_mlp(src, tmp_path / "m2.npz")["relu_assumed"] is True


def test_cli_import_evaluate_predict_lsh(tmp_path, data):
    train, test = data
    layers = _random_layers(3)
    src = tmp_path / "mlp.npz"
    np.savez(src, **{f"W{i}": w for i, (w, _) in enumerate(layers)}, **{f"b{i}": b for i, (_, b) in enumerate(layers)})
    test_file = tmp_path / "test.txt"
    write_dataset(test, test_file)
    names = tmp_path / "labels.txt"
    names.write_text("".join(f"label-{i}\n" for i in range(N)))
    runner = CliRunner()
    out = tmp_path / "model.npz"
    res = runner.invoke(main, ["import", str(src), "--out", str(out), "--labels", str(names),
                               "--set", "model.output.selection.budget=40"])
    assert res.exit_code == 0, res.output
    assert "budget 40" in res.output
    for flags in ([], ["--lsh"]):
        ev = runner.invoke(main, ["evaluate", "--checkpoint", str(out), "--data", str(test_file), "--json", *flags])
        assert ev.exit_code == 0, ev.output
        assert 0.0 <= json.loads(ev.output[ev.output.index("{"):])["P@1"] <= 1.0
    # the index over the imported rows finds the dense network's top label far more often than a
    # uniform choice of as many neurons would (budget / N), and with every label in budget, always
    top1 = _dense_logits(layers, test).argmax(axis=1)

    def lsh_top1(model):
        res = runner.invoke(main, ["predict", "--checkpoint", str(model), "--data", str(test_file), "--lsh", "--ids",
                                   "--top-k", "1"])
        assert res.exit_code == 0, res.output
        return np.array([int(line.split()[0].split(":")[0]) for line in res.stdout.splitlines() if line.strip()])

    half = tmp_path / "half.npz"
    assert runner.invoke(main, ["import", str(src), "--out", str(half), "--set", "model.output.selection.budget=20"]).exit_code == 0
    assert np.mean(lsh_top1(half) == top1) >= 2 * 20 / N  # 0.96 when written, against 0.22 by chance
    full = tmp_path / "full.npz"
    assert runner.invoke(main, ["import", str(src), "--out", str(full), "--set", f"model.output.selection.budget={N}"]).exit_code == 0
    np.testing.assert_array_equal(lsh_top1(full), top1)
    pr = runner.invoke(main, ["predict", "--checkpoint", str(out), "--data", str(test_file), "--top-k", "2", "--lsh"])
    assert pr.exit_code == 0, pr.output
    first = pr.output.splitlines()[0].split()
    assert first and all(tok.startswith("label-") for tok in first)
    bad = runner.invoke(main, ["import", str(tmp_path / "missing.npz"), "--out", str(out)])
    assert bad.exit_code == 2 and "no such file" in bad.output and "Traceback" not in bad.output
    # an --out in a directory that does not exist is refused, as predict's is (it was created)
    typo = tmp_path / "no-such-dir" / "model.npz"
    bad = runner.invoke(main, ["import", str(src), "--out", str(typo)])
    assert bad.exit_code == 2 and "does not exist" in bad.output and not typo.parent.exists()


def test_label_names_are_checked_before_the_model_file_is_written(tmp_path):
    from slidepy.checkpoint import read_checkpoint_meta

    layers = _random_layers()
    src = tmp_path / "mlp.npz"
    np.savez(src, **{f"W{i}": w for i, (w, _) in enumerate(layers)}, **{f"b{i}": b for i, (_, b) in enumerate(layers)})
    with pytest.raises(ImportErrorSlidepy, match=f"3 label names for {N} output neurons"):
        import_mlp(src, tmp_path / "short.npz", label_names=["a", "b", "c"])
    assert not (tmp_path / "short.npz").exists()
    names = [f"label{i}" for i in range(N)]
    import_mlp(src, tmp_path / "named.npz", label_names=names)
    assert read_checkpoint_meta(tmp_path / "named.npz")["label_names"] == names
