"""A checkpoint someone else wrote never runs code on resume: a shard carrying a pickle payload (it would create
a file) is refused with exit 2 when it is resumed on the same number of processes (DeepSpeed's engine load) and on
another one (DeepSpeed's universal conversion), and the payload never runs. The manifest is rewritten to match,
as an attacker would, so that only the unpickling guard stands in the way."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, TINY, run_cli
from tests.training.test_world_size_resume import ACCUM, COMMON
from tests.training.test_zero_distributed import ENV
from translrec_dist.errors import ConfigError
from translrec_dist.training.checkpoint import write_file_manifest

pytestmark = pytest.mark.slow
STEP = 2


class Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def train(out: Path, nproc: int, port: int, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                str(REPO / "configs" / "accelerate" / "cpu_ddp.yaml"), "--num_processes", str(nproc),
                "--main_process_port", str(port)]
    return run_cli(["train", str(TINY), *COMMON, ACCUM[nproc], "train.distributed=zero2", f"output_dir={out}",
                    *extra], launcher=launcher, env=ENV, check=check)


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory) -> Path:
    """A 1-process ZeRO-2 run stopped after its step-2 checkpoint."""
    out = tmp_path_factory.mktemp("crafted") / "run"
    train(out, 1, 29761, f"train.stop_after_steps={STEP}")
    return out


def crafted(stopped_run: Path, tmp_path: Path, shard: str) -> tuple[Path, Path, Path]:
    """A copy of the run whose ``shard`` carries a payload, its manifest rewritten to match."""
    run = tmp_path / "run"
    shutil.copytree(stopped_run, run)
    ckpt = run / "checkpoints" / f"step_{STEP}"
    target = next((ckpt / "pytorch_model").glob(f"*{shard}.pt"))
    marker = tmp_path / "MARKER"
    state = torch.load(target, weights_only=False)  # our own trusted file, to wrap the payload into
    state["payload"] = Payload(marker)
    torch.save(state, target)
    (ckpt / "checkpoint_files.json").unlink()
    write_file_manifest(ckpt)
    return run, target, marker


def assert_refused(proc: subprocess.CompletedProcess, target: Path, marker: Path) -> None:
    assert proc.returncode != 0 and not marker.exists(), proc.stderr[-3000:]
    assert f"translrec: error: {target}: refusing to unpickle it: it names " in proc.stderr, proc.stderr[-3000:]
    assert "pathlib" in proc.stderr and "start a new run" in proc.stderr


def test_a_payload_in_a_shard_resumed_on_another_number_of_processes_is_refused(stopped_run, tmp_path):
    run, target, marker = crafted(stopped_run, tmp_path, "optim_states")
    proc = train(run, 2, 29763, "train.resume_from=auto", check=False)
    assert_refused(proc, target, marker)  # every rank exits 2; torchrun's agent reports 1 and its own traceback
    assert not any(p.name.startswith(f"step_{STEP}.universal") for p in (run / "checkpoints").iterdir())
    # Proof the payload is live: DeepSpeed's own converter, run as universal.py ran it before, executes it.
    out = tmp_path / "universal"
    subprocess.run([sys.executable, "-m", "deepspeed.checkpoint.ds_to_universal", "--input_folder",
                    str(target.parent), "--output_folder", str(out), "--inject_missing_state",
                    "--num_extract_workers", "1", "--num_merge_workers", "1"], capture_output=True, timeout=300)
    assert marker.exists()


def test_a_payload_in_a_shard_resumed_on_the_same_number_of_processes_is_refused(stopped_run, tmp_path):
    run, target, marker = crafted(stopped_run, tmp_path, "model_states")
    proc = run_cli(["train", str(TINY), *COMMON, ACCUM[1], "train.distributed=zero2", f"output_dir={run}",
                    "train.resume_from=auto"], env={**ENV, "MASTER_PORT": "29765"}, check=False)  # no launcher
    assert_refused(proc, target, marker)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_the_universal_conversion_refuses_it_in_process_and_converts_a_clean_checkpoint(stopped_run, tmp_path):
    from translrec_dist.training.universal import convert_to_universal

    run, target, marker = crafted(stopped_run, tmp_path, "model_states")
    with pytest.raises(ConfigError, match="refusing to unpickle it: it names .*pathlib"):
        convert_to_universal(run / "checkpoints" / f"step_{STEP}", 1, 2)
    assert not marker.exists()
    clean = convert_to_universal(stopped_run / "checkpoints" / f"step_{STEP}", 1, 2)  # the guard lets it through
    assert (clean / "pytorch_model" / "zero").is_dir() and (clean / "trainer_state.json").is_file()
    shutil.rmtree(clean)
