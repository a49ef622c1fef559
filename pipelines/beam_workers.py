"""A Beam worker pool for this project's pipelines (PortableRunner, ``EXTERNAL`` environment).

What a Flink or Spark task manager runs beside its SDK harness, here on one machine: each
Beam job of a run (ExampleGen, StatisticsGen, Transform, Evaluator) asks the pool for a
worker, a fresh Python process that unpickles the job's functions and imports what they
need (TensorFlow, TFX, the project's Transform functions and custom TFMA metrics).

By default each worker is a thread of the pool's process: TensorFlow is imported once, on
the first job. With ``processes=True`` each is a Python process of its own, as Beam's
``worker_pool_main`` does (isolated, but each job then waits for a fresh import: about 40 s
on 2 cores). Beam's own pool starts processes with whatever ``python`` is first on ``PATH``
and the environment the pool was started with, and listens on every interface; this one
uses this interpreter and the project's runtime environment (``config.RUNTIME_ENVIRONMENT``:
the Keras the saved models need), and listens where it is told (loopback by default).

Threads share one process, so what a library keeps in module globals is shared by the jobs
running at once: ``serialize_thread_hostile_tracing`` covers the one such place the
pipeline's jobs reach (tf.Transform's object tracker, see there).
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading

from emotion_ai.pipelines import config

log = logging.getLogger("emotion_ai")


def beam_args(host: str, port: int) -> list[str]:
    """The Beam arguments that send a pipeline's work to a pool at ``host:port``."""
    return ["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=EXTERNAL",
            f"--environment_config={host}:{port}"]


_TRACING_LOCK = threading.Lock()


def serialize_thread_hostile_tracing() -> None:
    """Let one thread at a time trace a Transform graph in this process.

    tf.Transform keeps the objects a ``preprocessing_fn`` creates in one module global while
    it traces the function (``annotators.object_tracker_scope``, marked "Thread-Hostile" in
    its source) and asserts that no other trace holds it. Two Transforms whose workers are
    threads of one pool (the two branches run side by side) then fail in
    ``CreateSavedModel`` with ``assert _OBJECT_TRACKER is None``, depending on timing. A
    lock around the scope serializes only the tracing (seconds), not the jobs.
    """
    from tensorflow_transform import annotators

    original = annotators.object_tracker_scope
    if getattr(original, "serialized", False):
        return

    @contextlib.contextmanager
    def serialized_scope(object_tracker):
        with _TRACING_LOCK, original(object_tracker):
            yield

    serialized_scope.serialized = True
    annotators.object_tracker_scope = serialized_scope  # impl_helper looks it up at each call


def serve(host: str = "127.0.0.1", port: int = 50000, processes: bool = False) -> None:
    """Serve the pool until SIGTERM or Ctrl-C; then stop the workers it started."""
    import grpc
    from apache_beam.portability.api import beam_fn_api_pb2_grpc
    from apache_beam.runners.worker.worker_pool_main import BeamFnExternalWorkerPoolServicer, kill_process_gracefully
    from apache_beam.utils import thread_pool_executor

    config.set_runtime_environment()  # inherited by every worker
    if not processes:
        serialize_thread_hostile_tracing()
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    server = grpc.server(thread_pool_executor.shared_unbounded_instance(),
                         options=[("grpc.http2.max_pings_without_data", 0), ("grpc.http2.max_ping_strikes", 0)])
    if not server.add_insecure_port(f"{host}:{port}"):
        raise OSError(f"cannot listen on {host}:{port}")
    class Pool(BeamFnExternalWorkerPoolServicer):
        def StartWorker(self, request, context):  # noqa: N802 - Beam's gRPC method
            log.info("starting worker %s for a job (%s)", request.worker_id, "process" if processes else "thread")
            return super().StartWorker(request, context)

    pool = Pool(use_process=processes)
    beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(pool, server)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # so that the workers are stopped below
    server.start()
    log.info("Beam worker pool on %s:%d; pass %s", host, port, " ".join(beam_args(host, port)))
    try:
        server.wait_for_termination()
    finally:
        server.stop(0)
        for worker in list(pool._worker_processes.values()):  # Beam keeps no public handle on them
            kill_process_gracefully(worker)
