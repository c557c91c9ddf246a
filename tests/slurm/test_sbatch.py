"""slurm/*.sbatch on a real local SLURM: single node, two nodes, preemption with requeue, faults.

Every run starts from the same tiny export (``base_export``) so runs in different modes must agree to the bit.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.slurm.slurm_harness import base_export_fixture, kill_worker, run_args, slurm_fixture, tail  # noqa: F401 (fixtures)
from translrec_dist.run_dir import RunDir

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
STEPS = 200  # enough that a signal sent at step ~10 lands mid-run
LONG = 5000  # runs that must not finish before the fault is injected


def wait_for_step(out: Path, step: int, log: Path, timeout: float = 180) -> None:
    metrics = RunDir(out).metrics
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metrics.exists():
            lines = metrics.read_text().splitlines()
            if lines and json.loads(lines[-1]).get("step", 0) >= step:
                return
        time.sleep(0.2)
    raise AssertionError(f"training never reached step {step}\n{tail(log)}")


def last_metrics_step(out: Path) -> int:
    return json.loads(RunDir(out).metrics.read_text().splitlines()[-1])["step"]


def final_weights(out: Path) -> dict:
    return {f"{name}/{k}": v for name in ("model.safetensors", "head.safetensors")
            for k, v in load_file(str(out / "final" / name)).items()}


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = final_weights(a), final_weights(b)
    assert wa.keys() == wb.keys()
    diff = {k: (wa[k] - wb[k]).abs().max().item() for k in wa if not torch.equal(wa[k], wb[k])}
    assert not diff, f"final weights differ from the reference run: {diff}"


def assert_done(info: dict, log: Path, steps: int, out: Path) -> None:
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", f"{info}\n{tail(log)}"
    result = json.loads(RunDir(out).eval.read_text())
    assert result["step"] == steps and result["num_examples"] > 0 and 0 < result["auc"] <= 1
    assert last_metrics_step(out) == steps
    assert (out / "checkpoints" / f"step_{steps}" / "trainer_state.json").is_file()


@pytest.fixture(scope="module")
def single_node_run(slurm, base_export, tmp_path_factory):
    """(a) sbatch slurm/train.sbatch on one node with 2 training processes: the reference for the others."""
    tmp = tmp_path_factory.mktemp("single")
    out, log = tmp / "run", tmp / "job.out"
    start = time.monotonic()
    job = slurm.submit("train.sbatch", run_args(base_export, out, f"train.max_steps={STEPS}"), log=log,
                       procs_per_node=2)
    info = slurm.wait(job, log, timeout=240)
    print(f"\n[slurm] single node, 2 processes, {STEPS} steps: job {job} {time.monotonic() - start:.1f} s")
    return out, log, info


def test_single_node_two_processes(single_node_run):
    out, log, info = single_node_run
    assert_done(info, log, STEPS, out)
    text = log.read_text()
    assert "processes=2 (1 x 2)" in text and "SLURM_RESTART_COUNT=0" in text
    assert f"finished; results in {out}" in text
    assert "training 200 steps (50 per epoch), 2 processes" in text


def test_two_nodes_match_single_node(slurm, base_export, single_node_run, tmp_path):
    out, log = tmp_path / "run", tmp_path / "job.out"
    start = time.monotonic()
    job = slurm.submit("train_multinode.sbatch", run_args(base_export, out, f"train.max_steps={STEPS}"), log=log,
                       procs_per_node=1, cpus=1)
    info = slurm.wait(job, log, timeout=240)
    print(f"\n[slurm] two nodes x 1 process, {STEPS} steps: job {job} {time.monotonic() - start:.1f} s")
    assert_done(info, log, STEPS, out)
    text = log.read_text()
    assert "nodes=n[1-2] processes=2 (2 x 1)" in text
    # each node expanded its own rank (expanded once in the batch shell, both would say 0 and hang)
    assert "node n1 is node rank 0 of 2" in text and "node n2 is node rank 1 of 2" in text
    assert_same_weights(out, single_node_run[0])
    assert json.loads(RunDir(out).eval.read_text()) == json.loads(RunDir(single_node_run[0]).eval.read_text())


def test_preemption_checkpoints_requeues_and_resumes_exactly(slurm, base_export, single_node_run, tmp_path):
    out, log = tmp_path / "run", tmp_path / "job.out"
    start = time.monotonic()
    job = slurm.submit("train.sbatch", run_args(base_export, out, f"train.max_steps={STEPS}"), log=log,
                       procs_per_node=2)
    wait_for_step(out, 10, log)
    signalled = time.monotonic()
    subprocess.run(["scancel", "--signal=USR1", "--batch", job], env=slurm.env, check=True, timeout=30)
    seen: dict[str, float] = {}

    def watch(info):
        if "requeued" not in seen and info.get("Restarts") == "1":
            seen["requeued"] = time.monotonic() - signalled
        if "resumed" not in seen and log.exists() and "resumed from" in log.read_text():
            seen["resumed"] = time.monotonic() - signalled

    info = slurm.wait(job, log, timeout=300, poll=watch)
    nan = float("nan")
    print(f"\n[slurm] preemption: job {job} {time.monotonic() - start:.1f} s; signal -> requeued "
          f"{seen.get('requeued', nan):.1f} s, signal -> training resumed {seen.get('resumed', nan):.1f} s")
    assert info["Restarts"] == "1", info
    assert_done(info, log, STEPS, out)
    text = log.read_text()
    assert "got SIGUSR1" in text and "SLURM_RESTART_COUNT=0" in text and "SLURM_RESTART_COUNT=1" in text
    stopped = re.search(r"stopped at step (\d+) on a STOP file", text)
    resumed = re.search(r"resumed from \S+/step_(\d+) at step (\d+)", text)
    assert stopped and resumed, tail(log)
    assert 10 <= int(stopped.group(1)) == int(resumed.group(1)) == int(resumed.group(2)) < STEPS
    assert_same_weights(out, single_node_run[0])
    assert json.loads(RunDir(out).eval.read_text()) == json.loads(RunDir(single_node_run[0]).eval.read_text())


def test_killed_rank_fails_the_job_quickly(slurm, base_export, tmp_path):
    out, log = tmp_path / "run", tmp_path / "job.out"
    timeout_s = 60
    job = slurm.submit("train.sbatch", run_args(base_export, out, f"train.max_steps={LONG}", "train.checkpoint_every=5",
                                                f"train.collective_timeout_s={timeout_s}"), log=log, procs_per_node=2)
    wait_for_step(out, 6, log)
    killed = time.monotonic()
    kill_worker(out, local_rank=1)
    info = slurm.wait(job, log, timeout=timeout_s + 60)
    ended = time.monotonic() - killed
    print(f"\n[slurm] SIGKILL of rank 1: job {job} ended {ended:.1f} s after the kill")
    assert info["JobState"] == "FAILED" and info["ExitCode"] != "0:0", info
    assert ended < timeout_s + 30
    text = log.read_text()
    assert "training FAILED" in text and f"Last complete checkpoint: {out}/checkpoints/step_" in text, tail(log)
    assert "SIGKILL" in text, tail(log)  # torchrun names the dead rank and its signal
    assert last_metrics_step(out) < LONG


def test_scancel_sigterm_checkpoints_before_exit(slurm, base_export, tmp_path):
    out, log = tmp_path / "run", tmp_path / "job.out"
    job = slurm.submit("train.sbatch", run_args(base_export, out, f"train.max_steps={LONG}"), log=log,
                       procs_per_node=2)
    wait_for_step(out, 6, log)
    cancelled = time.monotonic()
    subprocess.run(["scancel", job], env=slurm.env, check=True, timeout=30)
    info = slurm.wait(job, log, timeout=90)
    print(f"\n[slurm] scancel (SIGTERM): job {job} ended {time.monotonic() - cancelled:.1f} s after scancel")
    assert info["JobState"] == "CANCELLED", info
    time.sleep(1)  # the cancelled job's last log lines
    text = log.read_text()
    assert "received SIGTERM; checkpointing at the next step" in text, tail(log)
    done = sorted((out / "checkpoints").glob("step_*/trainer_state.json"))
    assert done, f"no complete checkpoint after SIGTERM\n{tail(log)}"
    step = json.loads(done[-1].read_text())["step"]
    assert 6 <= step < LONG
    assert f"cancelled; last complete checkpoint: {done[-1].parent}." in text, tail(log)


def test_unreachable_master_fails_with_address_and_port(slurm, base_export, tmp_path):
    out, log = tmp_path / "run", tmp_path / "job.out"
    start = time.monotonic()
    job = slurm.submit("train_multinode.sbatch", run_args(base_export, out, f"train.max_steps={STEPS}"), log=log,
                       procs_per_node=1, cpus=1,
                       env={"TRANSLREC_MASTER_ADDR": "192.0.2.1", "TRANSLREC_RDZV_WAIT_S": "3"})
    info = slurm.wait(job, log, timeout=90)
    print(f"\n[slurm] unreachable master: job {job} failed after {time.monotonic() - start:.1f} s")
    assert info["JobState"] == "FAILED", info
    port = 29811 + int(job) % 2000
    assert f"cannot reach the rendezvous master at 192.0.2.1:{port} from" in log.read_text(), tail(log)
    assert not (out / "checkpoints").exists()


def test_requeue_is_off_on_the_test_cluster_unless_a_job_asks_for_it(slurm, tmp_path):
    """JobRequeue=0 (tests/slurm/cluster.sh): the requeues above come from the scripts' own --requeue."""
    for flag, expected in (("--no-requeue", "disabled"), ("--requeue", "requeued")):
        log = tmp_path / f"{flag}.out"
        wrap = ('if [ "${SLURM_RESTART_COUNT:-0}" = 0 ]; then scontrol requeue "$SLURM_JOB_ID" 2>&1; '
                'else echo requeued; fi')  # --wrap runs sh
        out = subprocess.run(["sbatch", "--parsable", flag, f"--output={log}", "--open-mode=append", "--wrap", wrap],
                             capture_output=True, text=True, env=slurm.env, timeout=60, check=True)
        job = out.stdout.strip()
        deadline = time.monotonic() + 60
        while expected not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
            time.sleep(0.5)
        subprocess.run(["scancel", job], env=slurm.env, timeout=30)
        assert expected in log.read_text(), tail(log)


TIME_LIMIT_STEPS = 2500  # ~50 s of training on 2 idle cores: still running when the warning comes (<= 30 s)


def test_time_limit_warning_checkpoints_requeues_and_finishes_exactly(slurm, base_export, tmp_path):
    """The real time-limit path: slurmctld sends --signal=B:USR1@90 before the job's --time runs out, the batch
    shell has training checkpoint, requeues the job itself (the cluster has JobRequeue=0), and the requeued run
    resumes and ends with the exact step count.

    To be independent of this machine's speed, the job starts with a long limit; once training runs, the test
    cuts the limit to 2 minutes (inside the 90 s warning window, so slurmctld signals at its next time check,
    within ~30 s), and after the requeue gives the new run a long limit again so that it can finish."""
    out, log = tmp_path / "run", tmp_path / "job.out"
    start = time.monotonic()
    job = slurm.submit("train.sbatch", run_args(base_export, out, f"train.max_steps={TIME_LIMIT_STEPS}"), log=log,
                       procs_per_node=2, sbatch_args=("--time=15", "--signal=B:USR1@90"))
    wait_for_step(out, 4, log)
    cut = slurm.scontrol("update", f"JobId={job}", "TimeLimit=2")
    assert cut.returncode == 0, cut.stderr
    limited = time.monotonic()
    seen: dict[str, float] = {}

    def watch(info):
        if "signal" not in seen and "got SIGUSR1" in log.read_text():
            seen["signal"] = time.monotonic() - limited
        if "requeued" not in seen and info.get("Restarts") == "1":
            seen["requeued"] = time.monotonic() - limited
            slurm.scontrol("update", f"JobId={job}", "TimeLimit=15")  # the requeued run may finish
        if "resumed" not in seen and "resumed from" in log.read_text():
            seen["resumed"] = time.monotonic() - limited

    info = slurm.wait(job, log, timeout=600, poll=watch)
    nan = float("nan")
    print(f"\n[slurm] time limit: job {job} {time.monotonic() - start:.1f} s; limit cut -> USR1 "
          f"{seen.get('signal', nan):.1f} s, -> requeued {seen.get('requeued', nan):.1f} s, -> training resumed "
          f"{seen.get('resumed', nan):.1f} s")
    assert info["Restarts"] == "1", info
    assert_done(info, log, TIME_LIMIT_STEPS, out)
    text = log.read_text()
    assert text.count("got SIGUSR1 (preemption or time limit ahead)") == 1, tail(log)
    assert f"requeueing job {job}" in text
    stopped = re.search(r"stopped at step (\d+) on a STOP file", text)
    resumed = re.search(r"resumed from \S+/step_(\d+) at step (\d+)", text)
    assert stopped and resumed, tail(log)
    assert 4 <= int(stopped.group(1)) == int(resumed.group(1)) == int(resumed.group(2)) < TIME_LIMIT_STEPS
