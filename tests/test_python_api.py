"""The Python API: README's example runs as written, imports stay lazy, overrides as a mapping."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO, TINY


def readme_example() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "README's Python API section has one python block"
    return blocks[0]


@pytest.mark.slow
def test_readme_example_runs(tmp_path):
    (tmp_path / "configs").mkdir()
    shutil.copy(TINY, tmp_path / "configs" / "tiny_cpu.yaml")
    proc = subprocess.run([sys.executable, "-c", readme_example()], cwd=tmp_path, capture_output=True, text=True,
                          timeout=900, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin",
                                            "TOKENIZERS_PARALLELISM": "false"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = proc.stdout.strip().splitlines()
    step, ndcg, export = lines[0].split()
    assert int(step) == 100 and 0 <= float(ndcg) <= 1
    assert export == "runs/notebook/final" and (tmp_path / export / "README.md").is_file()
    assert 0 <= float(lines[1]) <= 1
    top = eval(lines[2])  # the printed list of dicts
    assert len(top) == 3 and {"item_id", "title", "score"} <= set(top[0])


def test_import_is_light_and_names_load_on_use():
    code = ("import sys, translrec_dist as t; assert 'torch' not in sys.modules, 'import'; "
            "from translrec_dist import load_config, RunConfig, ConfigError; assert 'torch' not in sys.modules; "
            "assert callable(t.train) and t.Recommender.from_pretrained; print(sorted(t.__all__))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Recommender" in proc.stdout and "train" in proc.stdout
    import translrec_dist

    assert set(translrec_dist.__all__) == {"__version__", *translrec_dist._API}


def test_overrides_as_a_mapping_keep_python_values():
    from translrec_dist import ConfigError, load_config

    cfg = load_config(TINY, {"train.lr": 1e-5, "eval.ks": [5, 20], "data.item_text": "{title}: yes",
                             "model.tiny.hidden_size": 32}, seed=7)
    assert cfg.train.lr == 1e-5 and cfg.eval.ks == [5, 20] and cfg.seed == 7
    assert cfg.data.item_text == "{title}: yes"  # a string stays a string (no YAML parsing of values)
    with pytest.raises(ConfigError, match="train.lr"):
        load_config(TINY, {"train.lr": "fast"})
    with pytest.raises(ConfigError, match="Did you mean train.lr"):
        load_config(TINY, {"train.lrr": 1e-5})


def test_train_accepts_a_config_and_overrides(tmp_path, monkeypatch):
    """``train(cfg, overrides)`` re-validates the config with the overrides applied (nothing trains here)."""
    import translrec_dist.training.trainer as trainer
    from translrec_dist import load_config, train
    from translrec_dist.training.trainer import RunResult

    seen = {}

    def fake(cfg, task):
        seen["cfg"] = cfg
        return RunResult(3, stopped=False, metrics={"auc": 0.5})

    monkeypatch.setattr(trainer, "train", fake)
    base = load_config(TINY, {"output_dir": str(tmp_path / "run")})
    result = train(base, {"train.max_steps": 3, "model.tiny.hidden_size": 32})
    assert seen["cfg"].train.max_steps == 3 and seen["cfg"].model.tiny.hidden_size == 32
    assert seen["cfg"].data == base.data and base.train.max_steps is None  # the caller's config is unchanged
    assert result.metrics == {"auc": 0.5} and result.step == 3 and result.export_dir is None  # nothing exported


def test_predict_scores_a_dataframe_as_the_cli_does(tmp_path):
    import json

    import pandas as pd

    from tests.conftest import run_cli
    from tests.tiny_exports import write_export
    from translrec_dist import ConfigError, predict

    final = write_export(tmp_path / "final")
    rows = pd.DataFrame({"text": ["red apple pie ; blue sky song", "green tea cup"],
                         "text_pair": ["old film noir", "fast car race"]})
    scored = predict(final, rows)
    assert list(scored.columns) == ["text", "text_pair", "probability"]
    rows.to_csv(tmp_path / "rows.csv", index=False)
    proc = run_cli(["predict", "--model", str(final), "--input", str(tmp_path / "rows.csv")])
    cli = [json.loads(line)["probability"] for line in proc.stdout.splitlines()]
    assert scored["probability"].tolist() == pytest.approx(cli, abs=1e-6)
    retrieval = write_export(tmp_path / "retrieval" / "final", "task=retrieval")
    with pytest.raises(ConfigError):
        predict(retrieval, rows)
