"""slurm/job.sh's command lines, with stand-ins for srun, scontrol and the config check (no cluster needed):
what the batch shell passes to srun and to training on a first run, a re-submission and a requeue."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

STUBS = {
    # records its arguments, one per line; the training "succeeds"
    "srun": '#!/bin/bash\nprintf "%s\\n" "$@" > "$STUB_DIR/srun.args"\n',
    "scontrol": '#!/bin/bash\ncase "$1 $2" in\n  "show hostnames") echo n1 ;;\n'
                '  "show node") echo "NodeName=n1 NodeAddr=127.0.0.1 State=IDLE" ;;\nesac\n',
    # answers `-m translrec_dist config-get CONFIG output_dir ...` with the run's output_dir, and
    # `-m translrec_dist run-status DIR --field F` as for a run that finished
    "python": '#!/bin/bash\n[[ $3 == config-get ]] && { echo "$STUB_DIR/run"; exit 0; }\n'
              '[[ $3 == run-status && $6 == stop_file ]] && { echo "$STUB_DIR/run/STOP"; exit 0; }\n'
              '[[ $3 == run-status && $6 == finished ]] && { echo 1; exit 0; }\n'
              '[[ $3 == run-status ]] && exit 0\nexit 1\n',
}


def run_job(tmp_path: Path, *args: str, **env: str) -> list[str]:
    for name, text in STUBS.items():
        (tmp_path / name).write_text(text)
        (tmp_path / name).chmod(stat.S_IRWXU)
    full_env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "STUB_DIR": str(tmp_path),
                "TRANSLREC_PYTHON": str(tmp_path / "python"), "TRANSLREC_CPU": "1", "SLURM_JOB_ID": "7",
                "SLURM_JOB_NODELIST": "n1", "SLURM_NNODES": "1", **env}
    for unset in ("SLURM_RESTART_COUNT", "SLURM_CPUS_PER_TASK"):
        if unset not in env:
            full_env.pop(unset, None)
    proc = subprocess.run(["bash", str(REPO / "slurm" / "job.sh"), "cfg.yaml", *args], capture_output=True,
                          text=True, env=full_env, timeout=60)
    assert (tmp_path / "srun.args").is_file(), proc.stdout + proc.stderr
    return (tmp_path / "srun.args").read_text().splitlines()


def training_overrides(srun_args: list[str]) -> list[str]:
    return srun_args[srun_args.index("cfg.yaml") + 1:]


def test_srun_gets_the_cpus_per_task_of_the_allocation(tmp_path):
    assert "--cpus-per-task=6" in run_job(tmp_path, SLURM_CPUS_PER_TASK="6")
    assert not any(a.startswith("--cpus-per-task") for a in run_job(tmp_path))


def test_the_first_run_already_resumes_so_a_resubmitted_job_keeps_its_checkpoints(tmp_path):
    assert training_overrides(run_job(tmp_path, "train.lr=1e-4")) == ["train.lr=1e-4", "train.resume_from=auto"]


@pytest.mark.parametrize("restarts, expected", [
    (None, ["train.resume_from=/ckpt/step_4"]),  # a checkpoint given by hand: the first run starts there
    ("1", ["train.resume_from=/ckpt/step_4", "train.resume_from=auto"]),  # a requeued run continues its own
])
def test_a_resume_path_given_by_hand_holds_for_the_first_run_only(tmp_path, restarts, expected):
    env = {"SLURM_RESTART_COUNT": restarts} if restarts else {}
    assert training_overrides(run_job(tmp_path, "train.resume_from=/ckpt/step_4", **env)) == expected
