"""The Beam worker pool's thread mode: jobs that share one process must not share a trace."""
from __future__ import annotations

import threading
import time

from emotion_ai.pipelines import beam_workers, config

config.set_runtime_environment()


def test_two_transform_traces_in_one_process_take_turns():
    from tensorflow_transform import annotators

    beam_workers.serialize_thread_hostile_tracing()
    beam_workers.serialize_thread_hostile_tracing()  # idempotent: the pool may call it again
    inside, most_inside, errors = [0], [0], []
    lock = threading.Lock()

    def trace():
        try:
            with annotators.object_tracker_scope(annotators.ObjectTracker()):
                with lock:
                    inside[0] += 1
                    most_inside[0] = max(most_inside[0], inside[0])
                time.sleep(0.2)  # a trace takes a while: the other thread arrives meanwhile
                with lock:
                    inside[0] -= 1
        except AssertionError as error:  # tft's "assert _OBJECT_TRACKER is None"
            errors.append(error)

    threads = [threading.Thread(target=trace) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not errors, "a trace met another thread's object tracker"
    assert most_inside[0] == 1
    assert annotators._OBJECT_TRACKER is None, "the tracker is released after the last trace"


def test_tfx_builds_no_sdist_for_workers_only_while_beam_stays_in_this_process():
    from emotion_ai.pipelines.local_runner import beam_pipeline_args

    local = beam_pipeline_args()
    assert local[:len(config.BEAM_PIPELINE_ARGS)] == list(config.BEAM_PIPELINE_ARGS)
    assert set(config.IN_PROCESS_BEAM_ARGS) <= set(local)
    pool = beam_pipeline_args(beam_workers.beam_args("127.0.0.1", 50000))  # workers elsewhere need TFX staged
    assert not set(config.IN_PROCESS_BEAM_ARGS) & set(pool)
    assert not set(config.IN_PROCESS_BEAM_ARGS) & set(beam_pipeline_args(["--runner=PortableRunner",
                                                                           "--job_endpoint=localhost:8099"]))
    assert beam_pipeline_args(["--direct_num_workers=2"])[-1] == config.IN_PROCESS_BEAM_ARGS[-1]
