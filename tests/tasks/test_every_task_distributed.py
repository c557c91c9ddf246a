"""Every built-in task trains under DDP, ZeRO-2 and ZeRO-3 with 2 real processes on CPU, and ``translrec export``
turns a ZeRO-3 checkpoint of each exportable task into an export that loads and scores like the in-run one.

One launch per strategy trains all five tasks (tests/tasks/every_task_worker.py) to keep CI time down. Each
run uses grad_accum=2, so accumulation is part of what DDP and ZeRO must agree on. The sequential run (plain SGD,
its encoder training) is also compared weight for weight, evaluated and served.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import REPO, run_cli
from tests.run_files import losses
from tests.tasks.every_task_worker import TASKS
from tests.training.test_zero_distributed import ENV, LOSS_TOL
from translrec_dist.program import export_checkpoint, read_export
from translrec_dist.run_dir import RunDir

pytestmark = pytest.mark.slow
STRATEGIES = ("ddp", "zero2", "zero3")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("every_task")
    for port, strategy in enumerate(STRATEGIES, start=29721):
        log = root / f"{strategy}.log"
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(REPO / "configs/accelerate/cpu_ddp.yaml"), "--num_processes", "2", "--main_process_port", str(port),
               str(REPO / "tests/tasks/every_task_worker.py"), strategy, str(root / strategy)]
        with open(log, "w") as f:  # a file, not a pipe: a full pipe would stall one rank inside a collective
            proc = subprocess.run(cmd, cwd=REPO, env={**__import__("os").environ, **ENV, "PYTHONPATH": str(REPO)},
                                  stdout=f, stderr=subprocess.STDOUT, timeout=900)
        assert proc.returncode == 0, log.read_text()[-6000:]
    return root


@pytest.mark.parametrize("task", list(TASKS))
def test_every_task_trains_under_ddp_zero2_and_zero3_alike(runs, task):
    ddp = losses(runs / "ddp" / task)
    assert sorted(ddp) == [1, 2, 3, 4] and all(v == v for v in ddp.values())
    for strategy in STRATEGIES:
        run = RunDir(runs / strategy / task)
        assert json.loads(run.memory.read_text())["strategy"] == strategy  # really ran under that strategy
        assert json.loads(run.eval.read_text()) and run.final.is_dir()
        got = losses(run.root)
        assert sorted(got) == sorted(ddp)
        worst = max(abs(got[s] - ddp[s]) for s in ddp)
        assert worst < LOSS_TOL, f"{task} {strategy}: max |loss - ddp loss| = {worst:.2e}"


def export_weights(final: Path) -> dict[str, torch.Tensor]:
    return {f"{f.name}/{k}": v for f in sorted(final.glob("*.safetensors")) for k, v in load_file(str(f)).items()}


def test_sequential_under_zero3_ends_with_the_ddp_weights(runs):
    from translrec_dist.config.loader import load_config
    from translrec_dist.tasks.sequential import item_encoder

    ddp = RunDir(runs / "ddp" / "sequential")
    ref = export_weights(ddp.final)
    # The top encoder layer (the one ZeRO-3 partitions and the catalog refresh re-encodes with) moved by much more
    # than the tolerance: a missing gradient average or a stale refresh would show.
    cfg = load_config(ddp.config)
    initial, _ = item_encoder(cfg, json.loads((ddp.final / "catalog.json").read_text())["texts"])
    moved = max((ref[f"model.safetensors/{k}"] - v).abs().max().item() for k, v in initial.state_dict().items()
                if f"model.safetensors/{k}" in ref)
    assert moved >= 1e-3, f"SGD barely moved the encoder ({moved:.1e}): the tolerance would prove nothing"
    for strategy in ("zero2", "zero3"):
        got = export_weights(runs / strategy / "sequential" / "final")
        assert got.keys() == ref.keys()
        worst = max((got[k].double() - ref[k].double()).abs().max().item() for k in ref)
        assert worst <= 1e-5, f"{strategy}: max |w - w(ddp)| = {worst:.2e} after 4 SGD steps (moved {moved:.1e})"


def test_sequential_under_zero3_evaluates_like_ddp_and_one_process_and_serves(runs):
    from translrec_dist.data.sequences import build_sequence_data
    from translrec_dist.data.stages import read_source
    from translrec_dist.program import load_recommender
    from translrec_dist.tasks.sequential import evaluate_sequences

    zero3, ddp = RunDir(runs / "zero3" / "sequential"), RunDir(runs / "ddp" / "sequential")
    got, ref = (json.loads(r.eval.read_text()) for r in (zero3, ddp))
    for split_got, split_ref in ((got["valid"], ref["valid"]), (got, ref)):
        assert split_got["num_examples"] == 81  # every user once: the ranks' shares, padding dropped
        assert {k: v for k, v in split_got.items() if k != "valid"} == \
            pytest.approx({k: v for k, v in split_ref.items() if k != "valid"}, abs=1e-9)
    mid = [[r for r in map(json.loads, run.metrics.read_text().splitlines()) if "valid/mrr" in r]
           for run in (zero3, ddp)]  # validation at step 2, between training steps
    assert [r["step"] for r in mid[0]] == [2] and mid[0][0] == pytest.approx(mid[1][0], abs=1e-9)
    # the sharded, gathered evaluation of the run equals one process ranking every user with the export
    rec = load_recommender(zero3.final)
    data = build_sequence_data(*read_source(rec.cfg), rec.cfg)
    alone = evaluate_sequences(rec.scorer.model, data, "valid", rec.cfg.data.max_history)
    assert alone["num_examples"] == 81
    assert alone == pytest.approx({k: v for k, v in got["valid"].items() if k in alone}, abs=1e-6)
    proc = run_cli(["recommend", "--model", str(zero3.final), "--user", "0", "--top-k", "5"], env=ENV)
    served = [r["item_id"] for r in json.loads(proc.stdout)]
    expected = [r["item_id"] for r in load_recommender(ddp.final).recommend(user="0", top_k=5)]
    assert len(served) == 5 and served == expected


def probe_batch(tokenizer) -> dict:
    enc = tokenizer(["item 3 ; item 7", "a user who liked item 12"], ["item 5", "item 9"], padding=True,
                    return_tensors="pt")
    return dict(enc)


def outputs(model, task: str, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        if task == "retrieval":
            return model(**batch, encode="users")
        if task == "mlm":
            return model.lm(**batch).logits
        if task == "sequential":
            return model(mode="users", history=torch.tensor([[0, 3, 7], [-1, 12, 9]]))
        return model(**batch)


@pytest.mark.parametrize("task", ["ctr", "retrieval", "mlm", "sequential"])
def test_translrec_export_of_a_zero3_checkpoint_loads_and_scores_like_the_in_run_export(runs, task, tmp_path):
    run = RunDir(runs / "zero3" / task)
    ckpt = run.complete_checkpoints()[-1]
    assert (ckpt / "pytorch_model").is_dir()  # sharded: one partition per rank
    offline = export_checkpoint(ckpt, tmp_path / "offline")
    files = sorted(p.relative_to(run.final) for p in run.final.rglob("*.safetensors"))
    assert files and files == sorted(p.relative_to(offline) for p in offline.rglob("*.safetensors"))
    for name in files:
        online_w, offline_w = load_file(str(run.final / name)), load_file(str(offline / name))
        assert online_w.keys() == offline_w.keys()
        for key in online_w:
            torch.testing.assert_close(offline_w[key], online_w[key], rtol=0, atol=1e-6, msg=f"{name}:{key}")
    model_on, tok, cfg, _ = read_export(run.final)
    model_off, _, cfg_off, _ = read_export(offline)
    assert cfg_off.task == cfg.task == task
    batch = probe_batch(tok)
    got, expected = outputs(model_off, task, batch), outputs(model_on, task, batch)
    assert got.abs().sum() > 0
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
