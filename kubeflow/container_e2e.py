"""``make kubeflow-e2e``: the compiled Kubeflow spec, every task in a fresh container of the image.

What a user's cluster would do, short of Kubernetes itself:

1. the image is looked at from outside: no compiler in it, its size;
2. sample data is generated into a pipeline root (a folder standing in for the bucket) and
   the spec is compiled for that image and root, exactly as ``compile-kubeflow`` does;
3. run 1: every task, in dependency order, in a new container of the image named by its
   executor (``docker run --rm --network none``, its command and arguments exactly as the
   spec has them, ``{{$}}`` filled as KFP's launcher fills it, only the pipeline root
   mounted: nothing of the host's Python or of the checkout); both models must be pushed
   into the model repository, the report written and the MLflow run recorded;
4. run 2, same data, and run 3, with a new expression file: ``spec_runner`` keeps the cache
   as open-source KFP keeps it (``backend/src/v2/cacheutils/cache.go``); which tasks come
   from the cache and which run again is printed and checked against what that backend
   does: uncached tasks and everything downstream of an artifact made anew run, the rest
   is reused.

The summary (times, image, the cached and re-run lists) is printed and written to
``<work>/summary.md`` (and ``--results``). What only a real cluster can show is listed in
the README's Kubeflow section: pods, resources, the platform section, KFP's own driver.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

DEFAULT_WORK = Path("/var/tmp/emotion-ai-kubeflow-e2e")
TASK_TIMEOUT = 3600  # seconds: a task that runs longer has hung


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def inspect_image(image: str) -> dict:
    """Size, and that no compiler is in it (the build stage has one, the image must not)."""
    size = int(_docker("image", "inspect", "-f", "{{.Size}}", image).stdout)
    compilers = _docker("run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c",
                        "for c in gcc g++ cc c++ clang; do command -v $c; done; true").stdout.split()
    if compilers:
        raise SystemExit(f"e2e: the image carries a compiler: {compilers}")
    python = _docker("run", "--rm", "--network", "none", "--entrypoint", "python", image, "-c",
                     "import sys, emotion_ai.kubeflow, os; print(sys.version.split()[0], "
                     "os.path.dirname(emotion_ai.kubeflow.__path__[0]))").stdout.split()
    return {"image": image, "size_gb": round(size / 1e9, 2), "python": python[0], "installed_at": python[1]}


def expected_runs(spec: dict, new_data: set[str]) -> set[str]:
    """The tasks open-source KFP runs again on a later run of ``spec``, the rest taken from the
    cache, when the data of the branches in ``new_data`` changed: a task runs when its caching
    is off, when an artifact it reads was made anew (new MLMD id, new cache key), or when an
    input parameter's value changed (a DataFingerprint's, for new data)."""
    from emotion_ai.kubeflow.runner import task_name
    from emotion_ai.kubeflow.spec_runner import upstreams

    tasks = spec["root"]["dag"]["tasks"]
    changed_parameters = {task_name(f"DataFingerprint_{b}") for b in new_data}
    runs: set[str] = set()
    left = set(tasks)
    while left:
        for name in sorted(n for n in left if upstreams(tasks[n]) & left == set()):
            task = tasks[name]
            inputs = task.get("inputs", {})
            artifact_producers = {a["taskOutputArtifact"]["producerTask"] for a in inputs.get("artifacts", {}).values()}
            parameter_producers = {p["taskOutputParameter"]["producerTask"]
                                   for p in inputs.get("parameters", {}).values() if "taskOutputParameter" in p}
            if (not task.get("cachingOptions", {}).get("enableCache") or artifact_producers & runs
                    or parameter_producers & changed_parameters):
                runs.add(name)
            left.discard(name)
    return runs


def _check_first_run(run, root: Path) -> list[str]:
    from emotion_ai.components.branches import BRANCHES
    from emotion_ai.kubeflow.runner import task_name

    lines = []
    for branch in BRANCHES:
        pushed = run.results[task_name(branch.component_id("Pusher"))].artifacts["pushed_model"][0]["metadata"]
        if pushed.get("pushed") != 1:
            raise SystemExit(f"e2e: {branch.name} was not pushed: {pushed}")
        model = root / "model_repository" / branch.name / pushed["pushed_version"] / "saved_model.pb"
        if not model.is_file():
            raise SystemExit(f"e2e: {model} is missing")
        lines.append(f"{branch.name}: pushed version {pushed['pushed_version']} ({model.parent})")
    report = Path(run.results["runreport"].artifacts["report"][0]["uri"]) / "report.html"
    tracked = run.results["trackrun"].artifacts["mlflow_run"][0]["metadata"]
    if not report.is_file() or tracked.get("tracked") != 1:
        raise SystemExit(f"e2e: no report ({report}) or no MLflow run ({tracked})")
    lines.append(f"report {report}; MLflow run {tracked.get('mlflow_run_id', '?')} in {tracked.get('location', '?')}")
    return lines


def _run(spec: dict, run_id: str, launcher, log) -> tuple:
    from emotion_ai.kubeflow import spec_runner

    run = spec_runner.LocalRun(spec, run_id, launcher)
    start = time.time()
    total = len(spec["root"]["dag"]["tasks"])

    def progress(name, result):
        state = "from the cache" if result.cached else f"ran in {result.seconds:.0f} s"
        log(f"  [{len(run.order):2d}/{total}] {time.time() - start:6.0f} s  {name}: {state}")

    run.run(progress=progress)
    return run, time.time() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Run the compiled Kubeflow spec in fresh containers of the image.")
    parser.add_argument("--image", required=True)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help=f"default {DEFAULT_WORK} (emptied first)")
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--results", type=Path, default=None, help="also write the summary here")
    parser.add_argument("--build", default="", help="what the image's build printed (size, time), for the summary")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", FutureWarning)  # google-cloud's notices on importing the compiler

    from emotion_ai.data import generator
    from emotion_ai.kubeflow import runner, spec_runner
    from emotion_ai.pipelines import config

    config.set_runtime_environment()
    summary: list[str] = []

    def log(line: str = "") -> None:
        print(line, flush=True)
        summary.append(line)

    log(f"# Kubeflow spec in containers ({time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC)")
    log(f"code: {config.code_version()}")
    if args.build:
        log(args.build)
    image = inspect_image(args.image)
    log(f"image {image['image']}: {image['size_gb']} GB, Python {image['python']}, project installed at "
        f"{image['installed_at']}, no compiler")
    shutil.rmtree(args.work, ignore_errors=True)
    root = args.work / "root"
    profile = config.PROFILES[args.profile]
    generator.generate(root / "data", profile.sample_keypoint_rows, profile.sample_emotion_rows)
    spec_path = runner.compile_pipeline(args.work / "spec.yaml", image=args.image, pipeline_root=str(root),
                                        profile=profile)
    spec = spec_runner.load_spec(spec_path)
    tasks = spec["root"]["dag"]["tasks"]
    log(f"profile {args.profile}: {len(tasks)} tasks, pipeline root {root} (the only mount), network none")
    launcher = spec_runner.ContainerLauncher(mounts=[root], timeout=TASK_TIMEOUT)

    log("\n## Run 1: a first run")
    first, seconds = _run(spec, "run-1", launcher, log)
    log(f"run 1: {len(first.executed)} tasks ran in {seconds:.0f} s")
    for line in _check_first_run(first, root):
        log(f"  {line}")

    log("\n## Run 2: the same data")
    second, seconds = _run(spec, "run-2", launcher, log)
    _compare(second, expected_runs(spec, set()), seconds, log)

    log("\n## Run 3: a new expression file")
    from emotion_ai.components.branches import EMOTION

    generator.write_emotion_csv(root / "data" / "emotion_new.csv", max(20, profile.sample_emotion_rows // 10), seed=7)
    third, seconds = _run(spec, "run-3", launcher, log)
    _compare(third, expected_runs(spec, {EMOTION.name}), seconds, log)

    text = "\n".join(summary) + "\n"
    (args.work / "summary.md").write_text(text)
    if args.results:
        args.results.write_text(text)
    print(f"\nsummary: {args.work / 'summary.md'}")


def _compare(run, expected: set[str], seconds: float, log) -> None:
    log(f"ran again ({len(run.executed)}, {seconds:.0f} s): {', '.join(sorted(run.executed))}")
    log(f"from the cache ({len(run.cached)}): {', '.join(sorted(run.cached))}")
    if set(run.executed) != expected:
        raise SystemExit(f"e2e: open-source KFP would run {sorted(expected)}, this run ran {sorted(run.executed)}")
    log("as open-source KFP would: uncached tasks and everything downstream of a new artifact ran, the rest was reused")
    from emotion_ai.components.branches import BRANCHES
    from emotion_ai.kubeflow.runner import task_name

    for branch in BRANCHES:
        pusher = run.results[task_name(branch.component_id("Pusher"))]
        pushed = pusher.artifacts["pushed_model"][0]["metadata"]
        if pusher.cached:
            state = "from the cache"
        elif pushed.get("pushed") == 1:
            state = f"pushed version {pushed.get('pushed_version')}"
        elif "identical_to_version" in pushed:
            state = f"not pushed: identical to version {pushed['identical_to_version']}, which is served"
        else:
            state = "not pushed (not blessed)"
        log(f"  {branch.name}: {state}")


if __name__ == "__main__":
    sys.exit(main())
