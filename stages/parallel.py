"""``dvc repro`` on several processes: the stages of ``dvc.yaml`` in dependency order, ``--jobs``
of them at a time (``make repro`` runs this with two).

    python -m stages.parallel [--jobs 2] [--times FILE] [TARGET ...]

Why (ours): DVC runs one stage at a time, and every TensorFlow stage runs on one thread
(:func:`stages.training.setup.make_deterministic`: one intra-op and one inter-op thread, so a run
gives the same weights every time). On two cores a plain ``dvc repro`` leaves one core idle for
most of its run, while the three models' chains (pretrain -> finetune -> evaluate, explain,
export) do not depend on each other. Two stages side by side each run slower than alone, but the
whole pipeline finishes sooner, with the same bits (measured: README, "Running the pipeline faster").

How: each stage runs as ``dvc --wait-for-lock repro --single-item STAGE``, so DVC itself decides
whether it changed, runs it and records it in ``dvc.lock``, as a plain ``dvc repro`` would. While a
stage's command runs DVC holds only read locks on its dependencies and write locks on its outputs
(its own support for runs in parallel); a stage starts here only once every stage it depends on
has finished, so no two running stages share an output. Which stages to run: those ``dvc status``
lists and everything downstream of them (a stage whose inputs are about to be rewritten may look
unchanged now; DVC skips it if they come out the same). Among the stages ready to start, the one
with the longest chain after it goes first, so the long model chains start early: the chain in
seconds where ``metrics/bench_pipeline.json`` holds each stage's time alone (written by
``benchmarks/pipeline_time.py`` on the reference machine; ResNet-50's chain is the longest, so its
fine-tuning no longer waits for DenseNet-121's), else in stages. The times only order the starts:
what each stage computes is the same in any order.
After the last stage a plain ``dvc repro`` confirms nothing is left to do.

Each stage's output is printed line by line behind its name; a failed stage stops new ones from
starting, the running ones finish, and the exit code is 1 with the failed stage named.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

DEFAULT_JOBS = 2  # the reference machine's cores; each TensorFlow stage uses one
# Each stage's time when it runs alone (`serial` -> `stages`), measured by benchmarks/pipeline_time.py.
STAGE_SECONDS = Path("metrics/bench_pipeline.json")


@dataclass
class Pipeline:
    """The stages to run (by DVC address, e.g. ``finetune@resnet50``) and what each waits for."""
    upstream: dict[str, set[str]]  # stage -> the stages whose outputs it reads

    def downstream(self) -> dict[str, set[str]]:
        after: dict[str, set[str]] = {stage: set() for stage in self.upstream}
        for stage, befores in self.upstream.items():
            for before in befores:
                after.setdefault(before, set()).add(stage)
        return after

    def chain_lengths(self, seconds: Mapping[str, float] | None = None) -> dict[str, float]:
        """The longest path from each stage to the end of the pipeline, itself included: in stages,
        or with ``seconds`` in the sum of the stages' times (:func:`stage_weights`)."""
        after, lengths = self.downstream(), {}
        weight = stage_weights(self.upstream, seconds) if seconds else dict.fromkeys(self.upstream, 1)

        def length(stage: str) -> float:
            if stage not in lengths:
                lengths[stage] = weight[stage] + max((length(s) for s in after[stage]), default=0)
            return lengths[stage]

        for stage in self.upstream:
            length(stage)
        return lengths

    def restricted(self, stages: set[str]) -> "Pipeline":
        """Only ``stages``; an upstream stage outside them counts as done."""
        return Pipeline({s: self.upstream[s] & stages for s in self.upstream if s in stages})

    def closure_down(self, stages: set[str]) -> set[str]:
        """``stages`` and every stage downstream of them."""
        return _reachable(stages, self.downstream())

    def closure_up(self, stages: set[str]) -> set[str]:
        """``stages`` and every stage they depend on."""
        return _reachable(stages, self.upstream)


def stage_weights(stages, seconds: Mapping[str, float]) -> dict[str, float]:
    """Each stage's time from ``seconds``; one without a time weighs the mean of the timed stages of
    its kind (a new model's ``finetune@M`` as the other ``finetune@``), else 1 s."""
    def kind(stage: str) -> str:
        return stage.split("@", 1)[0]

    by_kind: dict[str, list[float]] = {}
    for stage, time_alone in seconds.items():
        by_kind.setdefault(kind(stage), []).append(float(time_alone))
    kind_mean = {name: sum(times) / len(times) for name, times in by_kind.items()}
    return {stage: float(seconds[stage]) if stage in seconds else kind_mean.get(kind(stage), 1.0)
            for stage in stages}


def measured_seconds(root: Path) -> dict[str, float] | None:
    """Each stage's time alone from ``STAGE_SECONDS`` under ``root``; None where there is none."""
    path = root / STAGE_SECONDS
    try:
        stages = json.loads(path.read_text())["serial"]["stages"]
        return {str(stage): float(t) for stage, t in stages.items()}
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        print(f"parallel: warning: {path}: no stage times ({type(err).__name__}: {err}); ordering by stage count",
              file=sys.stderr)
        return None


def _reachable(stages: set[str], neighbours: dict[str, set[str]]) -> set[str]:
    """``stages`` and every stage reached from them through ``neighbours``."""
    found, todo = set(), list(stages)
    while todo:
        stage = todo.pop()
        if stage not in found:
            found.add(stage)
            todo.extend(neighbours.get(stage, ()))
    return found


def read_pipeline(root: Path) -> tuple[Pipeline, set[str]]:
    """The stage graph of the repository at ``root`` and the stages ``dvc status`` lists."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph  # edges point from a stage to the stages it depends on
        upstream = {stage.addressing: {dep.addressing for dep in graph.successors(stage)}
                    for stage in graph.nodes}
        changed = set(repo.status())
    unknown = changed - set(upstream)
    if unknown:
        raise SystemExit(f"parallel: dvc status lists stages not in the graph: {sorted(unknown)}")
    return Pipeline(upstream), changed


def plan(pipeline: Pipeline, changed: set[str], targets: list[str] | None = None) -> Pipeline:
    """The part of ``pipeline`` to run: the changed stages and everything after them (within
    ``targets`` and what they depend on, when given)."""
    wanted = pipeline.closure_down(changed)
    if targets:
        # A foreach stage's name (``finetune``) stands for all its items (``finetune@M``), as in DVC.
        named = {t: {s for s in pipeline.upstream if s == t or s.startswith(f"{t}@")} for t in targets}
        missing = [t for t, found in named.items() if not found]
        if missing:
            raise SystemExit(f"parallel: no stage named {', '.join(missing)} in dvc.yaml "
                             f"(stages: {', '.join(sorted(pipeline.upstream))})")
        wanted &= pipeline.closure_up(set().union(*named.values()))
    return pipeline.restricted(wanted)


@dataclass
class Running:
    process: subprocess.Popen
    started: float
    reader: threading.Thread


@dataclass
class Outcome:
    seconds: dict[str, tuple[float, float]] = field(default_factory=dict)  # stage -> (start, end), from t0
    failed: dict[str, int] = field(default_factory=dict)  # stage -> exit code


def _relay(stage: str, stream, lock: threading.Lock) -> None:
    """Print a child's output line by line behind its stage's name (a progress bar's ``\\r``
    updates become lines too, so two stages' bars never share a line)."""
    for raw in stream:
        for line in raw.replace("\r", "\n").split("\n"):
            if line.strip():
                with lock:
                    print(f"[{stage}] {line}", flush=True)


def stage_command(stage: str) -> list[str]:
    return [sys.executable, "-m", "dvc", "--wait-for-lock", "repro", "--single-item", stage]


def execute(pipeline: Pipeline, root: Path, jobs: int, command=stage_command, log=print,
            seconds: Mapping[str, float] | None = None) -> Outcome:
    """Run every stage of ``pipeline``, ``jobs`` at a time, each once all its upstream stages
    finished, the longest chain first (in ``seconds`` where given); stop starting new ones after
    a failure."""
    if jobs < 1:
        raise SystemExit(f"parallel: --jobs must be at least 1, got {jobs}")
    priority = pipeline.chain_lengths(seconds)
    waiting = dict(pipeline.upstream)
    done: set[str] = set()
    running: dict[str, Running] = {}
    outcome, lock, t0 = Outcome(), threading.Lock(), time.perf_counter()
    total = len(waiting)
    try:
        while waiting or running:
            ready = sorted((s for s, befores in waiting.items() if befores <= done),
                           key=lambda s: (-priority[s], s))
            while ready and len(running) < jobs and not outcome.failed:
                stage = ready.pop(0)
                del waiting[stage]
                process = subprocess.Popen(command(stage), cwd=root, stdout=subprocess.PIPE,
                                           stderr=subprocess.STDOUT, text=True, bufsize=1)
                reader = threading.Thread(target=_relay, args=(stage, process.stdout, lock), daemon=True)
                reader.start()
                running[stage] = Running(process, time.perf_counter(), reader)
                with lock:
                    log(f"parallel: started {stage} ({len(done)} of {total} done, {len(running)} running)")
            if outcome.failed and not running:
                break
            if not running:
                # Nothing runs and nothing can start: a stage waits for one that is not in the plan.
                raise SystemExit(f"parallel: stages wait for stages that never ran: {sorted(waiting)}")
            time.sleep(0.2)
            for stage, job in list(running.items()):
                code = job.process.poll()
                if code is None:
                    continue
                job.reader.join()
                ended = time.perf_counter()
                outcome.seconds[stage] = (round(job.started - t0, 1), round(ended - t0, 1))
                del running[stage]
                with lock:
                    if code == 0:
                        done.add(stage)
                        log(f"parallel: finished {stage} in {ended - job.started:.1f} s")
                    else:
                        outcome.failed[stage] = code
                        log(f"parallel: {stage} FAILED (exit {code}); "
                            + (f"waiting for {', '.join(sorted(running))}" if running else "stopping"))
    except KeyboardInterrupt:
        for job in running.values():
            job.process.terminate()
        for job in running.values():
            job.process.wait()
        raise
    return outcome


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", help="stages to bring up to date (default: all)")
    parser.add_argument("--jobs", "-j", type=int, default=DEFAULT_JOBS, help="stages at a time")
    parser.add_argument("--times", type=Path, help="write each stage's start and end (seconds) here")
    args = parser.parse_args(argv)
    root = Path.cwd()
    pipeline, changed = read_pipeline(root)
    todo = plan(pipeline, changed, args.targets)
    started = time.perf_counter()
    if not todo.upstream:  # dvc status listed nothing: a plain dvc repro would run nothing either
        print("Data and pipelines are up to date.")
        return
    seconds = measured_seconds(root)
    print(f"parallel: {len(todo.upstream)} stage(s) to bring up to date, {args.jobs} at a time, the longest chain "
          f"first ({f'in seconds, {STAGE_SECONDS}' if seconds else 'in stages'})", flush=True)
    outcome = execute(todo, root, args.jobs, seconds=seconds)
    if args.times:
        from stages.common.io import write_json  # pandas: not imported for a no-op (0.5 s here)

        write_json(args.times, {"jobs": args.jobs, "seconds": round(time.perf_counter() - started, 1),
                                "stages": {s: {"start": a, "end": b} for s, (a, b) in sorted(outcome.seconds.items())}})
    if outcome.failed:
        raise SystemExit("parallel: failed: " + ", ".join(f"{s} (exit {c})" for s, c in sorted(outcome.failed.items())))
    # What a plain dvc repro would still do: nothing, unless the plan above missed a stage.
    final = subprocess.run([sys.executable, "-m", "dvc", "repro", *args.targets], cwd=root,
                           capture_output=True, text=True)
    sys.stdout.write(final.stdout)
    sys.stderr.write(final.stderr)
    if final.returncode != 0:
        raise SystemExit(f"parallel: the closing dvc repro failed (exit {final.returncode})")
    if "Running stage" in final.stdout:
        print("parallel: warning: the closing dvc repro ran stages the plan had left out (see above)", file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
