"""``emotion-ai``: the one command users drive the project with."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from emotion_ai.components import credentials, spec
from emotion_ai.components.branches import BRANCHES, EMOTION, KEYPOINTS
from emotion_ai.pipelines import config


def _profile(name: str) -> config.Profile:
    return config.PROFILES[name]


class _RedactingGroup(click.Group):
    """Every command's error message is redacted before click prints it (a URI in an
    exception may carry credentials)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.ClickException as error:
            error.message = credentials.redact(error.message)
            raise


def _set_up_process() -> None:
    """The runtime environment and logging of a process running a command (this one, or a
    scheduled run's child); TensorFlow is imported after this, if at all."""
    config.set_runtime_environment()
    credentials.redact_log_records()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@click.group(cls=_RedactingGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Emotion AI Pipeline: facial key points and expressions, trained, gated and served with TFX."""
    _set_up_process()


def _model_repo(model_repo: Path | None, profile: config.Profile) -> Path:
    return model_repo if model_repo is not None else config.model_repo_for(profile)


_MODEL_REPO_HELP = ("TF Serving model repository the Pusher writes to. Default: serving/model_repository for the "
                    "full profile, serving/model_repository-<profile> for any other.")


def _run_locally(profile: config.Profile | None, pipeline_root: Path, model_repo: Path | None, data_dir: Path,
                 verbose: bool, warm_start: int | None = None, **kwargs):
    """One local run under the pipeline root's lock, recorded in its history; TFX, Beam and
    TensorFlow logs go to a file unless ``verbose``. ``profile`` None: the one
    ``local_runner.choose_profile`` picks for the data, and the console says why;
    ``model_repo`` None: that profile's. Returns the run result."""
    from emotion_ai.pipelines import console, scheduler

    log_file = console.log_path(pipeline_root)
    finished = {}
    with console.quiet_logs(log_file, verbose) as out:
        why = ""
        if profile is None:
            from emotion_ai.pipelines import local_runner  # inside the redirection: TFX's import prints pages

            profile, why = local_runner.choose_profile(data_dir, kwargs.get("csvs"))
            other = (f"--profile {config.DEFAULT_PROFILE} for the production schedules"
                     if profile.name == config.SAMPLE_PROFILE else f"--profile {config.SAMPLE_PROFILE} for short ones")
            why = f" ({why}; {other})"
        profile = _warm(profile, warm_start)
        repo = _model_repo(model_repo, profile)
        print(f"run, profile {profile.name}{why}: models to {repo}; full log in {log_file}"
              + ("" if verbose else " (-v shows it here)"), file=out, flush=True)

        def one_run():
            from emotion_ai.pipelines import local_runner

            finished["result"] = local_runner.run(profile, pipeline_root, repo, data_dir,
                                                  progress=lambda line: print(line, file=out, flush=True), **kwargs)
            return finished["result"]

        scheduler.run_locked(pipeline_root, one_run, trigger="manual", raise_errors=True)
    return finished["result"]


_WARM_START = click.option(
    "--warm-start", "warm_start", type=click.IntRange(min=0), default=None,
    help="Start each Trainer from the model its branch serves and train this many epochs (a fraction of the "
         "learning rate); with nothing served, the full schedule. Default: the profile's (0: from scratch).")


def _warm(profile: config.Profile, epochs: int | None) -> config.Profile:
    import dataclasses

    return profile if epochs is None else dataclasses.replace(profile, warm_start_epochs=epochs)


_SERVING_LOG = click.option(
    "--serving-log", type=click.Path(path_type=Path), default=config.REQUEST_LOG_DIR, show_default=True,
    help="Where `serve --log-requests` records requests: the run measures skew against them when it exists.")

_BEAM_ARG = click.option(
    "--beam-arg", "beam_args", multiple=True,
    help="Beam pipeline argument (repeatable), after the defaults so it wins, e.g. --direct_num_workers=2 or "
         "--runner=PortableRunner --job_endpoint=HOST:8099.")


@main.command()
@click.option("--profile", type=click.Choice(sorted(config.PROFILES)), default=None,
              help=f"Data sizes, hyperparameters and gates. Default: {config.SAMPLE_PROFILE} (the production "
                   f"networks on short schedules) when the data is the embedded sample data, else "
                   f"{config.DEFAULT_PROFILE}.")
@click.option("--keypoints-csv", "keypoints_csvs", type=click.Path(path_type=Path), multiple=True,
              help="Key-point CSV(s) (Kaggle layout, plain or .gz). Default: all in the data dir.")
@click.option("--emotion-csv", "emotion_csvs", type=click.Path(path_type=Path), multiple=True,
              help="Expression CSV(s) (emotion,pixels; plain or .gz). Default: all in the data dir.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=config.DATA_DIR, show_default=True,
              help="Where CSVs are found; sample data is generated here when it holds none.")
@click.option("--pipeline-root", type=click.Path(path_type=Path), default=config.PIPELINE_ROOT, show_default=True)
@click.option("--model-repo", type=click.Path(path_type=Path), default=None, help=_MODEL_REPO_HELP)
@click.option("--allow-other-profile", is_flag=True,
              help="Push even into a model repository that another profile's runs own.")
@click.option("--no-cache", is_flag=True, help="Re-run every component even if its inputs are unchanged.")
@_BEAM_ARG
@click.option("-v", "--verbose", is_flag=True, help="Show the TFX/Beam/TensorFlow logs here, not only in the log file.")
@_SERVING_LOG
@_WARM_START
def run(profile, keypoints_csvs, emotion_csvs, data_dir, pipeline_root, model_repo, allow_other_profile, no_cache,
        beam_args, verbose, serving_log, warm_start) -> None:
    """Run the whole two-branch pipeline on the local Beam runner."""
    from emotion_ai.components.csv_rows import InputDataError
    from emotion_ai.pipelines import scheduler

    try:
        csvs = {KEYPOINTS.name: keypoints_csvs, EMOTION.name: emotion_csvs}
        result = _run_locally(profile and _profile(profile), pipeline_root, model_repo, data_dir, verbose,
                              warm_start, csvs=csvs, enable_cache=not no_cache,
                              allow_other_profile=allow_other_profile, beam_args=beam_args, serving_log=serving_log)
    except (InputDataError, scheduler.RunBusyError) as exc:
        raise click.ClickException(str(exc)) from None
    from emotion_ai.pipelines import local_runner

    click.echo(local_runner.format_summary(result))


@main.command()
@click.option("--model-repo", type=click.Path(path_type=Path), default=config.MODEL_REPO, show_default=True)
@click.option("--keypoints-csv", type=click.Path(path_type=Path), help="Kaggle-layout CSV (plain or .gz).")
@click.option("--emotion-csv", type=click.Path(path_type=Path), help="emotion,pixels CSV (plain or .gz).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("metrics.json"), show_default=True)
def evaluate(model_repo, keypoints_csv, emotion_csv, out) -> None:
    """Score the newest pushed models, through their serving signatures, on CSVs."""
    from emotion_ai.components.csv_rows import InputDataError
    from emotion_ai.pipelines import evaluate as evaluation

    if not keypoints_csv and not emotion_csv:
        raise click.UsageError("give --keypoints-csv and/or --emotion-csv")
    try:
        result = evaluation.evaluate(model_repo, {KEYPOINTS.name: keypoints_csv, EMOTION.name: emotion_csv})
    except (InputDataError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    evaluation.write_json(result, out)
    click.echo(evaluation.format_table(result))
    click.echo(f"wrote {out}")


@main.command()
@click.option("--run", "run_id", default="latest", show_default=True, help="Pipeline run id, or 'latest'.")
@click.option("--pipeline-root", type=click.Path(path_type=Path), default=config.PIPELINE_ROOT, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Default: <pipeline root>/reports/<run id>/report.html")
def report(run_id, pipeline_root, out) -> None:
    """Render one self-contained HTML evaluation report of a pipeline run."""
    metadata = Path(pipeline_root) / config.METADATA_FILE
    if not metadata.is_file():  # checked before TensorFlow is imported
        raise click.ClickException(f"{pipeline_root}: no pipeline run here (no {config.METADATA_FILE}); "
                                   "run `emotion-ai run` first or pass --pipeline-root")
    from emotion_ai.pipelines import report as report_lib

    try:
        path = report_lib.write(pipeline_root, None if run_id == "latest" else run_id, out)
    except (KeyError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc).strip("'\"")) from None
    click.echo(str(path))


@main.command()
@click.option("--cron", required=True, help='Cron expression, e.g. "0 3 * * *" (a 6th field is seconds).')
@click.option("--profile", type=click.Choice(sorted(config.PROFILES)), default=config.DEFAULT_PROFILE,
              show_default=True)
@click.option("--data-dir", type=click.Path(path_type=Path), default=config.DATA_DIR, show_default=True)
@click.option("--pipeline-root", type=click.Path(path_type=Path), default=config.PIPELINE_ROOT, show_default=True)
@click.option("--model-repo", type=click.Path(path_type=Path), default=None, help=_MODEL_REPO_HELP)
@click.option("--max-runs", type=int, default=None, help="Stop after this many finished runs.")
@_BEAM_ARG
@click.option("-v", "--verbose", is_flag=True, help="Show the TFX/Beam/TensorFlow logs here, not only in log files.")
@_SERVING_LOG
@_WARM_START
def schedule(cron, profile, data_dir, pipeline_root, model_repo, max_runs, beam_args, verbose, serving_log,
             warm_start) -> None:
    """Run the pipeline on the local Beam runner at each cron tick, in the foreground."""
    from croniter import croniter

    if not croniter.is_valid(cron):  # before TensorFlow is imported: a typo costs a second, not thirty
        raise click.ClickException(f"invalid cron expression {cron!r}: 5 fields (minute hour day-of-month month "
                                   "day-of-week), or 6 with seconds last")
    import functools

    from emotion_ai.pipelines import scheduler

    chosen = _profile(profile)
    one_run = functools.partial(scheduled_run, chosen.name, Path(pipeline_root), _model_repo(model_repo, chosen),
                                Path(data_dir), tuple(beam_args), verbose, serving_log, warm_start)
    scheduler.schedule(cron, pipeline_root, one_run, max_runs=max_runs)


def scheduled_run(profile: str, pipeline_root: Path, model_repo: Path, data_dir: Path, beam_args: tuple,
                  verbose: bool, serving_log: Path | None = None, warm_start: int | None = None) -> dict:
    """One scheduled run, in the child process the scheduler starts for it (a fresh
    interpreter: the runtime environment and logging are set up here); returns its history
    fields."""
    _set_up_process()
    from emotion_ai.pipelines import console, scheduler

    log_file = console.log_path(pipeline_root)
    click.echo(f"scheduled run, profile {profile}: full log in {log_file}")
    with console.quiet_logs(log_file, verbose) as out:
        from emotion_ai.pipelines import local_runner

        result = local_runner.run(_warm(config.PROFILES[profile], warm_start), pipeline_root, model_repo, data_dir,
                                  beam_args=beam_args,
                                  progress=lambda line: print(line, file=out, flush=True), serving_log=serving_log)
    click.echo(local_runner.format_summary(result))
    return scheduler.describe(result)


def _span_range(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{names[0]}..{names[-1]}"


@main.command()
@click.option("--pipeline-root", type=click.Path(path_type=Path), default=config.PIPELINE_ROOT, show_default=True)
@click.option("--last", type=click.IntRange(min=1), default=20, show_default=True, help="How many of the latest runs.")
def runs(pipeline_root, last) -> None:
    """List the run history: every manual and scheduled run of this pipeline root."""
    from emotion_ai.pipelines import scheduler

    entries, problems = scheduler.history_entries(pipeline_root)
    for problem in problems:
        click.echo(f"warning: {scheduler.history_path(pipeline_root)} {problem}: skipped", err=True)
    entries = entries[-last:]
    if not entries:
        click.echo(f"no runs recorded in {scheduler.history_path(pipeline_root)}")
        return
    click.echo(f"{'start':<26} {'end':<26} {'trigger':<9} {'profile':<8} {'status':<10} {'models':<30} report")
    for e in entries:
        models = " ".join(f"{n}:{'B' if m['blessed'] else '-'}{'P' if m['pushed'] else '-'}"
                          f"{'A' if m.get('anomalies') else ''}{'D' if m.get('drift') else ''}"
                          + (f"[{_span_range(m['spans'])}]" if m.get("spans") else "")
                          for n, m in (e.get("models") or {}).items())
        click.echo(f"{e['start']:<26} {e.get('end', ''):<26} {e.get('trigger', 'schedule'):<9} "
                   f"{e.get('profile') or '':<8} {e['status']:<10} {models or e.get('error', ''):<30} "
                   f"{e.get('report') or ''}")
    click.echo("models: B blessed, P pushed, A data anomalies (not trained when flagged), D drift or skew; "
               "[spans read]")


@main.command()
@click.option("--data-dir", type=click.Path(path_type=Path), default=config.DATA_DIR, show_default=True,
              help="Raw CSVs of both formats, sub-folders too, as `run` reads them.")
@click.option("--branch", "branch_names", multiple=True, help="Only this branch (repeatable). Default: every branch.")
@click.option("--out-dir", type=click.Path(path_type=Path), default=None,
              help="Write <out-dir>/<branch>/schema.pbtxt instead of the checkout's curated schemas.")
def schema(data_dir, branch_names, out_dir) -> None:
    """Regenerate the curated schemas: TFDV's inference on the data, plus the registry's domains.

    Review the difference (git diff) before committing it: the pipeline validates every
    run's data against these files.
    """
    import tempfile

    from emotion_ai.components import csv_rows, curated_schema
    from emotion_ai.components.branches import BRANCHES, by_name

    config.set_runtime_environment()
    import tensorflow_data_validation as tfdv

    chosen = [by_name(n) for n in branch_names] or list(BRANCHES)
    for branch in chosen:
        sources = [p for p in csv_rows.find_csvs(data_dir) if csv_rows.detect_kind(p) == branch.name]
        if not sources:
            raise click.ClickException(f"no {branch.name} CSV under {data_dir}")
        with tempfile.TemporaryDirectory() as work:
            inferred, staged = curated_schema.infer(branch, sources, work)
        target = (out_dir / branch.name / curated_schema.SCHEMA_FILE if out_dir
                  else Path(curated_schema.source_path(branch)))
        target.parent.mkdir(parents=True, exist_ok=True)
        tfdv.write_schema_text(inferred, str(target))
        click.echo(f"{branch.name}: {target} from {staged.rows_read - staged.rows_rejected} rows of {len(sources)} "
                   f"file(s) ({staged.rows_rejected} rejected)")


@main.command("beam-worker-pool")
@click.option("--host", default="127.0.0.1", show_default=True, help="0.0.0.0 exposes it to the network")
@click.option("--port", type=click.IntRange(1, 65535), default=50000, show_default=True)
@click.option("--processes", is_flag=True, help="each job's worker in a Python process of its own, as Beam's "
              "worker_pool_main does (isolated; slower: each job imports TensorFlow anew). Default: threads of "
              "this process.")
def beam_worker_pool(host, port, processes) -> None:
    """Serve Beam workers for `run --beam-arg=--runner=PortableRunner ... --environment_type=EXTERNAL`."""
    from emotion_ai.pipelines import beam_workers

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")  # the workers' Beam chatter
    logging.getLogger("emotion_ai").setLevel(logging.INFO)  # which worker starts for which job
    click.echo("runs use it with: " + " ".join(f"--beam-arg={a}" for a in beam_workers.beam_args(host, port)))
    try:
        beam_workers.serve(host, port, processes)
    except (OSError, RuntimeError) as error:
        raise click.ClickException(str(error)) from None


@main.command()
@click.option("--model-repo", type=click.Path(path_type=Path), default=config.MODEL_REPO, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="0.0.0.0 exposes it to the network")
@click.option("--port", type=int, default=8501, show_default=True)
@click.option("--poll-seconds", type=float, default=1.0, show_default=True, help="how often to look for new versions")
@click.option("--max-request-mb", type=float, default=16.0, show_default=True)
@click.option("--log-requests", is_flag=True, help="Record a sample of the images sent (their brightness, contrast "
              "and sharpness only) where `run` reads them to measure skew (see --request-log).")
@click.option("--request-log", type=click.Path(path_type=Path), default=config.REQUEST_LOG_DIR, show_default=True)
@click.option("--log-sample", type=click.FloatRange(0, 1, min_open=True), default=config.REQUEST_LOG_SAMPLE,
              show_default=True, help="Fraction of predict requests recorded.")
@click.option("--log-max-mb", type=click.FloatRange(min=0.01), default=config.REQUEST_LOG_MAX_MB, show_default=True,
              help="Records kept per model; the oldest day's go first.")
def serve(model_repo, host, port, poll_seconds, max_request_mb, log_requests, request_log, log_sample,
          log_max_mb) -> None:
    """Serve the pushed models over TF Serving's REST API (no Docker needed)."""
    from emotion_ai.serving import server
    from emotion_ai.serving.request_log import RequestLog

    requests = RequestLog(request_log, log_sample, int(log_max_mb * 1024 * 1024)) if log_requests else None
    if requests:
        click.echo(f"recording {log_sample:.0%} of the requests' images (numbers only) in {request_log}")
    try:
        server.serve(model_repo, host, port, poll_seconds, int(max_request_mb * 1024 * 1024), requests)
    except FileNotFoundError as error:
        raise click.ClickException(str(error)) from error


@main.command()
@click.argument("model")
@click.option("--to", "version", type=int, default=None, help="Version to serve. Default: the one before the "
              "version served now.")
@click.option("--latest", is_flag=True, help="Remove the pin: serve the newest version again.")
@click.option("--model-repo", default=str(config.MODEL_REPO), show_default=True,
              help="The repository: a folder, or a URI TensorFlow can write (gs://...).")
def rollback(model, version, latest, model_repo) -> None:
    """Pin MODEL to an earlier version in models.config (TF Serving's `specific` policy),
    which `serve` and TF Serving pick up on their next poll; pushes keep the pin."""
    from emotion_ai.components import model_repository

    if latest and version is not None:
        raise click.UsageError("--to and --latest exclude each other")
    available = model_repository.version_dirs(model_repository.join(model_repo, model))
    if not available:
        raise click.ClickException(f"{model_repository.join(model_repo, model)}: no pushed version of {model!r}")
    pins = model_repository.read_pins(model_repo)
    if not latest and version is None:
        current = pins.get(model, available[-1])
        earlier = [v for v in available if v < current]
        if not earlier:
            raise click.ClickException(f"{model}: no version before {current} to roll back to "
                                       f"(versions: {', '.join(map(str, available))})")
        version = earlier[-1]
    try:
        model_repository.set_pin(model_repo, model, None if latest else version)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    if latest:
        click.echo(f"{model}: pin removed, serving the newest version ({available[-1]})")
    else:
        where = model_repository.join(model_repo, model_repository.MODELS_CONFIG)
        click.echo(f"{model}: pinned to version {version} in {where} "
                   f"(newest is {available[-1]}; `emotion-ai rollback {model} --latest` undoes it)")


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--server", default=None, help="TF Serving REST URL, e.g. http://127.0.0.1:8501 (default: in-process)")
@click.option("--model-repo", type=click.Path(path_type=Path), default=config.MODEL_REPO, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("predictions"), show_default=True)
@click.option("--min-score", type=click.FloatRange(0.0, 1.0), default=spec.FACE_MIN_SCORE, show_default=True,
              help="Drop faces the finder scores lower (its false boxes score low).")
def predict(inputs, server, model_repo, out, min_score) -> None:
    """Find faces in photos (or score dataset CSVs): key points, expression, JSON + annotated image."""
    from tqdm import tqdm

    from emotion_ai.serving import predict as predict_lib
    from emotion_ai.serving.client import ServingError

    try:
        summaries, errors = predict_lib.run(list(inputs), out, model_repo=None if server else model_repo, server=server,
                                            progress=lambda xs: tqdm(xs, desc="predict", unit="file"),
                                            min_score=min_score)
    except (FileNotFoundError, ServingError) as error:
        raise click.ClickException(str(error)) from error
    for s in summaries:
        if "faces" in s:
            found = f"{s['faces']} face(s): {', '.join(s['labels'])}" if s["faces"] else "no face found"
            click.echo(f"{s['input']}: {found} -> {s['json']}, {s['image']}")
        else:
            click.echo(f"{s['input']}: {s['rows_scored']} rows scored, {s['rows_rejected']} rejected -> {s['json']}")
    for error in errors:
        click.echo(f"error: {credentials.redact(error)}", err=True)
    if errors:
        raise SystemExit(1)


@main.command("compile-kubeflow")
@click.option("--out", type=click.Path(path_type=Path), default=Path("kubeflow/emotion-ai-pipeline.yaml"),
              show_default=True)
@click.option("--image", default=None, help="Container image holding this project (kubeflow/Dockerfile). "
              "Default: ghcr.io/emotion-ai/emotion-ai-pipeline:<commit of this checkout>.")
@click.option("--pipeline-root", required=True, help="e.g. gs://bucket/emotion-ai")
@click.option("--data", default=None, help="Folder (URI) of the raw CSVs, both formats side by side; each "
              "ExampleGen checks every row and takes its own format. Default: <pipeline root>/data")
@click.option("--model-repo", default=None, help="Default: <pipeline root>/model_repository")
@click.option("--profile", type=click.Choice(sorted(config.PROFILES)), default=config.DEFAULT_PROFILE,
              show_default=True)
@click.option("--beam-arg", "beam_args", multiple=True,
              help="Beam pipeline argument (repeatable), added to the default in-pod FnApiRunner with 2 workers; "
                   "a flag given again wins, e.g. --beam-arg=--direct_num_workers=8, or "
                   "--runner=DataflowRunner --project=P --region=R --temp_location=gs://B/tmp")
@click.option("--trainer-cpu", default=None, help="CPU of each Trainer pod (request = limit), e.g. 4 or 3500m.")
@click.option("--trainer-memory", default=None, help="Memory of each Trainer pod (request = limit), e.g. 16G.")
@click.option("--trainer-gpus", type=click.IntRange(min=0), default=0, show_default=True,
              help="Accelerators per Trainer pod; the Trainers then run the GPU image (--gpu-image).")
@click.option("--gpu-type", default="nvidia.com/gpu", show_default=True, help="Accelerator resource name.")
@click.option("--gpu-image", default=None, help="Image of GPU Trainers (`make image IMAGE_VARIANT=gpu`). "
              "Default: the image's name with -gpu after its tag.")
@click.option("--tracking-uri", default="", help="MLflow tracking server of the TrackRun task, without "
              "credentials, e.g. http://mlflow.mlflow:5000. Default: MLFLOW_TRACKING_URI in the task's environment; "
              "with neither, runs are not tracked (the task says so in its log and its output).")
@click.option("--secret-env", "secret_env", multiple=True, metavar="SECRET:KEY=ENV",
              help="A key of a Kubernetes secret as an environment variable of every task (repeatable), e.g. "
                   "mlflow-auth:password=MLFLOW_TRACKING_PASSWORD.")
@click.option("--image-pull-secret", "pull_secrets", multiple=True, help="Kubernetes secret to pull the image with.")
@click.option("--node-selector", "node_selector", multiple=True, metavar="LABEL=VALUE",
              help="Node label every task's pod must have (repeatable).")
@click.option("--trainer-node-selector", "trainer_node_selector", multiple=True, metavar="LABEL=VALUE",
              help="Node label the Trainer pods must have too (repeatable), e.g. "
                   "cloud.google.com/gke-accelerator=nvidia-l4.")
@click.option("--serving-log", default="", help="Folder (URI) where the model server records requests "
              "(`serve --log-requests`), for the DataDrift tasks' skew. Default: no skew measured.")
def compile_kubeflow(out, image, pipeline_root, data, model_repo, profile, beam_args, trainer_cpu, trainer_memory,
                     trainer_gpus, gpu_type, gpu_image, tracking_uri, secret_env, pull_secrets, node_selector,
                     trainer_node_selector, serving_log) -> None:
    """Compile the same pipeline into a Kubeflow Pipelines spec (bare PipelineSpec YAML, schema 2.1.0)."""
    from emotion_ai.kubeflow import runner

    def labels(items, option):
        found = {}
        for item in items:
            label, sep, value = item.partition("=")
            if not sep or not label:
                raise click.BadParameter(f"{item!r} is not LABEL=VALUE", param_hint=option)
            found[label] = value
        return found

    kwargs = {}
    if data:
        kwargs["inputs"] = {b.name: data for b in BRANCHES}
    try:
        trainer = runner.Resources(cpu=trainer_cpu, memory=trainer_memory, gpus=trainer_gpus, gpu_type=gpu_type)
        platform = runner.Platform(secret_env=tuple(runner.SecretEnv.parse(s) for s in secret_env),
                                   image_pull_secrets=tuple(pull_secrets),
                                   node_selector=labels(node_selector, "--node-selector"),
                                   trainer_node_selector=labels(trainer_node_selector, "--trainer-node-selector"))
        path = runner.compile_pipeline(out, image=image, pipeline_root=pipeline_root, model_repo=model_repo,
                                       profile=_profile(profile), beam_args=beam_args, trainer=trainer,
                                       gpu_image=gpu_image, tracking_uri=tracking_uri, serving_log=serving_log,
                                       platform=platform, **kwargs)
    except ValueError as error:  # a quantity Kubernetes would not take, credentials in a URI, ...
        raise click.ClickException(str(error)) from None
    click.echo(str(path))


@main.command("deploy-kubeflow")
@click.option("--host", required=True, help="KFP API endpoint, e.g. http://localhost:8080 (kubectl port-forward "
              "svc/ml-pipeline-ui 8080:80 -n kubeflow) or https://HOST/pipeline")
@click.option("--cron", required=True,
              help='Same syntax as `schedule`, e.g. "0 3 * * *" (sent to KFP with seconds first)')
@click.option("--spec", type=click.Path(path_type=Path), default=Path("kubeflow/emotion-ai-pipeline.yaml"),
              show_default=True)
@click.option("--experiment", default=config.PIPELINE_NAME, show_default=True)
@click.option("--namespace", default=None, help="Kubeflow profile namespace (multi-user installs)")
@click.option("--service-account", default=None, help="Kubernetes service account the runs' pods use (e.g. one "
              "bound to a cloud identity for the bucket). Default: the KFP installation's (pipeline-runner).")
def deploy_kubeflow(host, cron, spec, experiment, namespace, service_account) -> None:
    """Upload the compiled spec to Kubeflow Pipelines and schedule it (replaces an earlier schedule)."""
    from emotion_ai.kubeflow import deploy

    try:
        result = deploy.deploy(spec, host, cron, experiment=experiment, namespace=namespace,
                               service_account=service_account)
    except (ValueError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"pipeline {result.pipeline_id} version {result.version_id}; experiment {result.experiment_id}; "
               f"recurring run {result.recurring_run_id} on cron '{result.cron}'"
               + (f" (replaced {', '.join(result.replaced_recurring_runs)})" if result.replaced_recurring_runs else ""))


@main.command("kserve-manifests")
@click.option("--model-repo", default=None, help="URI of the pushed model repository, e.g. gs://BUCKET/emotion-ai/model_repository")
@click.option("--namespace", default="kubeflow", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="File to write. Default: standard output.")
def kserve_manifests(model_repo, namespace, out) -> None:
    """Print (or write) first KServe InferenceService manifests (TensorFlow format) for both models."""
    from emotion_ai.kubeflow import kserve

    if out is None:
        click.echo(kserve.render(model_repo or kserve.DEFAULT_MODEL_REPO_URI, namespace), nl=False)
        return
    click.echo(str(kserve.write(out, model_repo or kserve.DEFAULT_MODEL_REPO_URI, namespace)))


@main.command("deploy-kserve")
@click.option("--model-repo", required=True, help="URI of the pushed model repository, as the pods read it, "
              "e.g. gs://BUCKET/emotion-ai/model_repository")
@click.option("--model", "models", multiple=True, help="Only this model (repeatable). Default: every model.")
@click.option("--namespace", default="kubeflow", show_default=True)
@click.option("--canary-percent", type=int, default=None,
              help="Send this share of the traffic to the new version first (KServe's canary rollout); roll out "
                   "again without it to promote.")
def deploy_kserve(model_repo, models, namespace, canary_percent) -> None:
    """Print InferenceService manifests that serve the version the repository serves now (the newest push, or
    a `rollback` pin), for `kubectl apply -f -`: KServe copies a model when a pod starts, so a push is rolled
    out by pointing the service at it."""
    from emotion_ai.kubeflow import kserve

    try:
        click.echo(kserve.rollout(model_repo, namespace, canary_percent, tuple(models)), nl=False)
    except (ValueError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from None


@main.command("generate-data")
@click.option("--out", type=click.Path(path_type=Path), default=config.DATA_DIR, show_default=True)
@click.option("--seed", type=int, default=None,
              help="Default: a fresh draw (never the one `run` trains on when data/ is empty, which is seed 0).")
@click.option("--keypoint-rows", type=int, default=config.PROFILES[config.DEFAULT_PROFILE].sample_keypoint_rows,
              show_default=True)
@click.option("--emotion-rows", type=int, default=config.PROFILES[config.DEFAULT_PROFILE].sample_emotion_rows,
              show_default=True)
def generate_data(out, seed, keypoint_rows, emotion_rows) -> None:
    """Write the deterministic synthetic sample data in the two real CSV formats."""
    import secrets

    from emotion_ai.data import generator

    if seed is None:
        seed = generator.TRAINING_SEED
        while seed == generator.TRAINING_SEED:
            seed = secrets.randbelow(2**31)
    for path in generator.generate(out, keypoint_rows, emotion_rows, seed):
        click.echo(f"wrote {path}")
    click.echo(f"seed {seed} (`--seed {seed}` writes the same data again)")


if __name__ == "__main__":
    sys.exit(main())
