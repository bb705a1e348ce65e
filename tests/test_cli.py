"""The command line: --help everywhere, and bad input as one line naming what and where, exit status 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from seriesforge.cli import build_parser, main

HELP_PATHS = [[], ["data"], ["data", "captions"], ["data", "captions", "make"], ["data", "captions", "inspect"],
              ["data", "ucr", "prepare"], ["train"], ["tune"], ["eval"], ["eval", "fcn", "train"], ["generate"],
              ["serve"]]


@pytest.mark.parametrize("path", HELP_PATHS)
def test_every_command_explains_itself(path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*path, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "usage: seriesforge" in text and len(text.splitlines()) > 5


def run(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


def test_unknown_family_is_rejected_by_choices(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "nosuch", "--data", "captions:/x", "--out", "/tmp/x"])
    assert exit_.value.code == 2
    assert "invalid choice: 'nosuch'" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--set", "model.depth=abc"], "error: model.depth: expected an integer, got 'abc'"),
    (["--set", "nosuch.key=1"], "error: nosuch: unknown key"),
    (["--preset", "huge"], "error: --preset: unknown preset 'huge'"),
])
def test_bad_config_is_one_line(extra, message, tmp_path, tiny_corpus, capsys):
    code, err = run(["train", "t2s", "--data", f"captions:{tiny_corpus}", "--out", str(tmp_path / "r"), *extra],
                    capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith(message), err
    assert not (tmp_path / "r").exists(), "a failed start must not leave a run directory behind"


@pytest.mark.parametrize("spec, message", [
    ("captions:/no/such/dir", "directory /no/such/dir does not exist"),
    ("ucr2:/x", "unknown data kind 'ucr2'"),
    ("sines:1", "window length must be >= 2"),
    ("sines:abc", "window length 'abc' is not an integer"),
    ("csv:/no/such.csv:24", "file /no/such.csv does not exist"),
    ("csv:24", "csv needs a file and a window length"),
    ("sines:24", "family t2s trains on captions data, not sines"),
])
def test_bad_data_spec(spec, message, tmp_path, capsys):
    code, err = run(["train", "t2s", "--data", spec, "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and len(err) == 1 and message in err[0], err


def test_stage_flags_are_checked_before_ray(tmp_path, capsys):
    gunpoint = Path(__file__).resolve().parent / "fixtures" / "ucr" / "GunPoint"
    code, err = run(["train", "timevqvae", "--data", f"ucr:{gunpoint}", "--out", str(tmp_path / "r"),
                     "--stage", "prior"], capsys)
    assert code == 2 and "--stage re-runs a stage from a stored checkpoint" in err[0], err
    code, err = run(["train", "timevqvae", "--from", str(tmp_path / "none"), "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "no such file or directory" in err[0], err
    code, err = run(["train", "timevqvae", "--data", f"ucr:{gunpoint}", "--out", str(tmp_path / "r"),
                     "--set", "model.num_classes=5"], capsys)
    assert code == 2 and "model.num_classes: 5 but" in err[0], err
    assert not (tmp_path / "r").exists()


def test_empty_corpus_directory(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, err = run(["data", "captions", "inspect", str(tmp_path / "empty")], capsys)
    assert code == 2 and "no corpus files found" in err[0]


@pytest.fixture
def untrained_checkpoint(tmp_path):
    """A final-stage T2S debug checkpoint with untrained weights: enough for request validation and formats."""
    from seriesforge import checkpoint, config as C, registry

    cfg = registry.preset_config("t2s", "debug", "captions:/unused")
    model = registry.get("t2s")(cfg.model)
    return checkpoint.write_checkpoint(tmp_path / "ckpt", config=C.to_dict(cfg), state_dict=model.state_dict(),
                                       meta={"family": "t2s", "stage": "denoiser", "stage_index": 1, "step": 1})


def test_generate_bad_requests(untrained_checkpoint, tmp_path, capsys):
    ckpt = untrained_checkpoint
    out = str(tmp_path / "x.npy")
    cases = [
        (["--n", "2", "--length", "0"], "length: must be in"),
        (["--n", "2", "--length", "99999"], "length: must be in"),
        (["--n", "0", "--length", "24"], "n: must be a positive integer"),
        (["--caption", "", "--length", "24"], "captions[0]: empty caption"),
    ]
    for extra, message in cases:
        code, err = run(["generate", "--checkpoint", str(ckpt), *extra, "--out", out], capsys)
        assert code == 2 and len(err) == 1 and message in err[0], (extra, err)
    code, err = run(["generate", "--checkpoint", str(ckpt), "--n", "1", "--length", "24", "--length", "48",
                     "--out", out], capsys)
    assert code == 2 and "a .npy holds one length" in err[0]
    code, err = run(["generate", "--checkpoint", str(tmp_path / "nope"), "--n", "1", "--length", "24",
                     "--out", out], capsys)
    assert code == 2 and "no such file or directory" in err[0]
    (ckpt / "weights" / "model.safetensors").unlink()
    code, err = run(["generate", "--checkpoint", str(ckpt), "--n", "1", "--length", "24", "--out", out], capsys)
    assert code == 2 and "missing file weights/model.safetensors" in err[0]


def test_generate_writes_each_format(untrained_checkpoint, tmp_path, capsys):
    import numpy as np
    import pyarrow.parquet as pq

    ckpt = untrained_checkpoint
    base = ["generate", "--checkpoint", str(ckpt), "--caption", "rises", "--caption", "falls"]
    assert main([*base, "--length", "24", "--out", str(tmp_path / "a.npy")]) == 0
    assert np.load(tmp_path / "a.npy").shape == (2, 1, 24)
    assert main([*base, "--length", "24", "--length", "40", "--out", str(tmp_path / "a.parquet")]) == 0
    table = pq.read_table(tmp_path / "a.parquet").to_pydict()
    assert sorted(set(zip(table["caption"], table["length"]))) == [("falls", 24), ("falls", 40),
                                                                   ("rises", 24), ("rises", 40)]
    assert main([*base, "--length", "24", "--out", str(tmp_path / "a.png")]) == 0
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["generate", "--checkpoint", str(ckpt), "--n", "3", "--length", "30",
                 "--out", str(tmp_path / "u.npy")]) == 0
    assert np.load(tmp_path / "u.npy").shape == (3, 1, 30)




def _write_ucr(folder, name, rows_train, rows_test):
    d = folder / name
    d.mkdir(parents=True)
    for split, rows in (("TRAIN", rows_train), ("TEST", rows_test)):
        (d / f"{name}_{split}.tsv").write_text("".join("\t".join(map(str, r)) + "\n" for r in rows))
    return d


def test_ucr_inspect_and_spec(tmp_path, capsys):
    from seriesforge.data.specs import check_readable
    from seriesforge.errors import DataError

    one = _write_ucr(tmp_path, "Tiny", [[1, 0.1, 0.2, 0.3], [2, 0.3, 0.2, 0.1]], [[1, 0.0, 0.1, 0.2]])
    _write_ucr(tmp_path, "Other", [[1, 0.5, 0.6], [1, 0.6, 0.7]], [[1, 0.1, 0.2]])
    assert main(["data", "ucr", "inspect", str(tmp_path)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:5] == ["name", "train", "test", "length", "classes"]
    assert [line.split()[:5] for line in table[1:3]] == [["Other", "2", "1", "2", "1"], ["Tiny", "2", "1", "3", "2"]]
    assert check_readable(f"ucr:{one}").kind == "ucr"
    with pytest.raises(DataError, match="holds 2"):
        check_readable(f"ucr:{tmp_path}")
    code, err = run(["data", "ucr", "inspect", str(tmp_path / "nope")], capsys)
    assert code == 2 and "not a directory" in err[0]


@pytest.mark.parametrize("space, message", [
    ("model.nosuch: {choice: [1, 2]}", "space.model.nosuch: unknown config key 'model.nosuch'"),
    ("model.depth: {randint: [5, 2]}", "space.model.depth: empty range"),
    ("model.depth: {uniform: [1.5, 2.5]}", "space.model.depth: uniform value 1.5 is not valid here"),
])
def test_tune_rejects_an_invalid_space_before_any_trial(space, message, tmp_path, tiny_corpus, capsys):
    f = tmp_path / "space.yaml"
    f.write_text(space + "\n")
    code, err = run(["tune", "t2s", "--data", f"captions:{tiny_corpus}", "--out", str(tmp_path / "sweep"),
                     "--space", str(f), "--trials", "2", "--max-concurrent", "1", "--metric", "loss",
                     "--mode", "min"], capsys)
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "sweep").exists()
