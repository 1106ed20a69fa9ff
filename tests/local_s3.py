"""A local S3-compatible server on 127.0.0.1, and a DVC remote round trip through it.

The server is moto's (``moto[server]``, an S3 API in a thread of the test process, objects kept in
memory and temporary files). The round trip does what the README's "A DVC remote" section tells a
team to do: the pipeline's repository gets a default remote (``dvc remote add -d``, committed), each
machine says where the store answers and who it is in git-ignored places (``dvc remote modify
--local``, or the ``AWS_*`` environment variables), one machine pushes, a fresh clone pulls.
"""

from __future__ import annotations

import filecmp
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from stages.checks.reproduce import clean_copy, tool_env

BUCKET = "cxr-s-pipeline"
REMOTE = "store"
URL = f"s3://{BUCKET}/dvc"
# moto accepts any key; these name the local server only and open nothing anywhere else.
ACCESS_KEY, SECRET_KEY = "local-test-key", "local-test-secret"
UP_TO_DATE = "Data and pipelines are up to date."


@contextmanager
def s3_server() -> Iterator[str]:
    """Serve S3 on 127.0.0.1 (a free port) with an empty bucket :data:`BUCKET`; yield its endpoint URL."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=ACCESS_KEY,
                     aws_secret_access_key=SECRET_KEY).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.stop()


def _environment(workdir: Path, credentials: bool) -> dict[str, str]:
    """The tools' environment, cut off from any AWS set-up of the machine (files, instance metadata)."""
    env = {k: v for k, v in tool_env().items() if not k.startswith("AWS_")}
    empty = workdir / "aws-config-empty"  # botocore wants a file, not /dev/null
    empty.touch()
    env.update(AWS_CONFIG_FILE=str(empty), AWS_SHARED_CREDENTIALS_FILE=str(empty), AWS_EC2_METADATA_DISABLED="true",
               AWS_DEFAULT_REGION="us-east-1")
    if credentials:
        env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
    return env


def _run(workdir: Path, env: dict[str, str], *command: str) -> str:
    result = subprocess.run(list(command), cwd=workdir, env=env, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)}` in {workdir} exited {result.returncode}:\n"
                           f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout + result.stderr


def outputs(root: Path) -> list[str]:
    """Every output ``dvc.lock`` lists (cached in DVC or committed to git), sorted."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    return sorted({out["path"] for stage in lock["stages"].values() for out in stage.get("outs", [])})


def differing_files(left: Path, right: Path, paths: list[str]) -> list[str]:
    """Paths (files, or files under folders) that are missing on one side or differ in a byte."""
    problems = []
    for path in paths:
        a, b = left / path, right / path
        if a.is_dir() or b.is_dir():
            names = {p.relative_to(a) for p in a.rglob("*") if p.is_file()} if a.is_dir() else set()
            other = {p.relative_to(b) for p in b.rglob("*") if p.is_file()} if b.is_dir() else set()
            problems += [f"{path}/{n}: only on one side" for n in sorted(names ^ other)]
            problems += [f"{path}/{n}: bytes differ" for n in sorted(names & other)
                         if not filecmp.cmp(a / n, b / n, shallow=False)]
        elif not (a.is_file() and b.is_file()):
            problems.append(f"{path}: missing on one side")
        elif not filecmp.cmp(a, b, shallow=False):
            problems.append(f"{path}: bytes differ")
    return problems


@dataclass
class RoundTrip:
    clone: Path
    pushed: str  # dvc push's report
    status: str  # dvc status in the fresh clone after dvc pull
    repro: str  # dvc repro there (run only when status is clean)
    compared: list[str]  # the outputs compared byte for byte
    differences: list[str]


def round_trip(repo: Path, workdir: Path, endpoint: str) -> RoundTrip:
    """Push ``repo``'s pipeline outputs (from its DVC cache) through ``endpoint``; pull them into a fresh clone.

    ``repo`` is left as it is: its git files are copied into ``workdir/pusher`` (committed), which
    uses ``repo``'s cache, gets the remote and pushes. ``workdir/clone`` is a ``git clone`` of it:
    no cache, no data, and, like any clone, none of the pusher's git-ignored ``config.local``.
    """
    pusher, clone = workdir / "pusher", workdir / "clone"
    pusher.mkdir(parents=True)
    plain, with_keys = _environment(workdir, credentials=False), _environment(workdir, credentials=True)

    def dvc(where: Path, *args: str, env: dict[str, str] = plain) -> str:
        return _run(where, env, sys.executable, "-m", "dvc", *args)

    clean_copy(repo, pusher)
    dvc(pusher, "cache", "dir", "--local", dvc(repo, "cache", "dir").strip().splitlines()[-1])
    # Committed, for the whole team: the remote's name and bucket.
    dvc(pusher, "remote", "add", "--default", REMOTE, URL)
    _run(pusher, plain, "git", "add", ".dvc/config")
    _run(pusher, plain, "git", "-c", "user.name=remote", "-c", "user.email=remote@localhost",
         "-c", "commit.gpgsign=false", "commit", "-q", "-m", "DVC remote")
    # This machine only (git-ignored .dvc/config.local): where an S3-compatible store answers.
    dvc(pusher, "remote", "modify", "--local", REMOTE, "endpointurl", endpoint)
    pushed = dvc(pusher, "push", env=with_keys)  # credentials from the AWS_* variables

    _run(workdir, plain, "git", "clone", "-q", str(pusher), str(clone))
    for option, value in (("endpointurl", endpoint), ("access_key_id", ACCESS_KEY),
                          ("secret_access_key", SECRET_KEY)):  # credentials in config.local this time
        dvc(clone, "remote", "modify", "--local", REMOTE, option, value)
    dvc(clone, "pull")
    status = dvc(clone, "status")
    # A clone whose outputs did not all arrive would retrain here (minutes): repro only a clean one.
    repro = dvc(clone, "repro") if UP_TO_DATE in status else "(not run: dvc status was not clean)"
    compared = outputs(clone)
    return RoundTrip(clone, pushed, status, repro, compared, differing_files(repo, clone, compared))


def assert_arrived(trip: RoundTrip) -> None:
    """What the fresh clone must show after ``dvc pull``."""
    assert "pushed" in trip.pushed, trip.pushed
    assert UP_TO_DATE in trip.status, trip.status
    assert "Running stage" not in trip.repro and UP_TO_DATE in trip.repro, trip.repro
    # Every output of dvc.lock: the DVC-cached data and models, and the metrics and reports git carries.
    assert any(p.startswith("models/") for p in trip.compared) and "data/images" in trip.compared, trip.compared
    assert trip.differences == [], trip.differences
