"""Deploy the compiled pipeline spec to Kubeflow Pipelines and schedule it.

Uploads the spec (a new pipeline, or a new version of the existing one), gets or creates
the experiment, and creates a recurring run with the same cron expression that
``emotion-ai schedule`` takes. Re-deploying replaces the recurring run of the same name,
so a schedule never runs twice. Uses the kfp SDK's client (the KFP v2beta1 REST API).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import socket
import urllib.parse
from pathlib import Path

from croniter import croniter

from emotion_ai.pipelines import config


@dataclasses.dataclass(frozen=True)
class Deployment:
    pipeline_id: str
    version_id: str
    experiment_id: str
    recurring_run_id: str
    cron: str  # as sent to KFP (6 fields, seconds first)
    replaced_recurring_runs: tuple[str, ...]


def kfp_cron(expression: str) -> str:
    """Standard cron (5 fields, or croniter's 6 with seconds last) -> KFP's 6-field form,
    seconds first (robfig/cron). Invalid expressions raise ``ValueError``."""
    fields = expression.split()
    if len(fields) not in (5, 6) or not croniter.is_valid(expression):
        raise ValueError(f"invalid cron expression {expression!r}: expected 5 fields "
                         "(minute hour day-of-month month day-of-week) or 6 with seconds last")
    if len(fields) == 5:
        return " ".join(["0", *fields])
    return " ".join([fields[5], *fields[:5]])


def check_reachable(host: str, timeout: float = 2.0) -> None:
    """Fail in ``timeout`` seconds with one line when nothing listens at ``host``'s address
    (the kfp client would retry, then print a traceback of hundreds of lines)."""
    url = urllib.parse.urlparse(host if "://" in host else f"http://{host}")
    if not url.hostname:
        raise ValueError(f"--host {host!r} is not a URL (e.g. http://localhost:8080)")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as error:
        raise ValueError(f"cannot reach the KFP API at {host} ({url.hostname}:{port}: "
                         f"{error.strerror or error})") from None


def deploy(spec: Path, host: str, cron: str, *, pipeline_name: str = config.PIPELINE_NAME,
           experiment: str = config.PIPELINE_NAME, job_name: str | None = None, namespace: str | None = None,
           version_name: str | None = None, service_account: str | None = None, client=None) -> Deployment:
    """Upload ``spec`` to the KFP API at ``host`` and schedule it with ``cron``; its runs' pods
    use ``service_account`` (None: the installation's default)."""
    spec = Path(spec)
    if not spec.is_file():
        raise FileNotFoundError(f"{spec}: no pipeline spec; run `emotion-ai compile-kubeflow` first")
    schedule = kfp_cron(cron)
    if client is None:
        check_reachable(host)
        import kfp  # after the checks: importing it takes seconds

        client = kfp.Client(host=host, namespace=namespace or "kubeflow")
    version_name = version_name or f"{pipeline_name}-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}"
    job_name = job_name or f"{pipeline_name}-scheduled"

    pipeline_id = client.get_pipeline_id(pipeline_name)
    if pipeline_id is None:
        pipeline_id = client.upload_pipeline(str(spec), pipeline_name=pipeline_name, namespace=namespace).pipeline_id
        versions = client.list_pipeline_versions(pipeline_id, page_size=1, sort_by="created_at desc")
        version_id = versions.pipeline_versions[0].pipeline_version_id
    else:
        version_id = client.upload_pipeline_version(str(spec), version_name,
                                                    pipeline_id=pipeline_id).pipeline_version_id
    experiment_id = client.create_experiment(experiment, namespace=namespace).experiment_id

    replaced = []
    existing = client.list_recurring_runs(experiment_id=experiment_id, page_size=100).recurring_runs or []
    for run in existing:
        if run.display_name == job_name:
            client.delete_recurring_run(run.recurring_run_id)
            replaced.append(run.recurring_run_id)

    run = client.create_recurring_run(experiment_id, job_name, cron_expression=schedule, pipeline_id=pipeline_id,
                                      version_id=version_id, max_concurrency=1, no_catchup=True, enabled=True,
                                      service_account=service_account)
    return Deployment(pipeline_id, version_id, experiment_id, run.recurring_run_id, schedule, tuple(replaced))
