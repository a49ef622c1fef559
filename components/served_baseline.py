"""The Evaluator's baseline: the model this branch's repository serves now.

A candidate must do at least as well as the model it would replace, and that is the one a
server of the model repository loads: the version pinned by ``emotion-ai rollback``, else
the newest. ``ServedModel`` copies it into a ``Model`` artifact (the Evaluator reads
``<uri>/Format-Serving``) and records which version it was. An ordinary container task on
every orchestrator: TFX's ``LatestBlessedModelResolver`` compiles to KFP ``resolver``
executors, which open-source KFP does not run, and its compiled filter loses the per-branch
scoping.

With nothing served yet (a first run, or a new repository) the artifact is marked absent and
``Evaluator`` (below) drops it: TFMA then applies the absolute bounds only. A candidate the
Trainer did not train (its data failed validation, ``data_gate``) is not blessed.
"""
# No ``from __future__ import annotations``: the component decorator reads the real types.
import os

from tfx import v1 as tfx
from tfx.components.evaluator import constants
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import io_utils, path_utils

from emotion_ai.components import data_gate, model_repository
from emotion_ai.components.spec import SERVED_FROM, SERVED_VERSION


@tfx.dsl.components.component
def ServedModel(model_repo: tfx.dsl.components.Parameter[str], model: tfx.dsl.components.Parameter[str],
                cache_key: tfx.dsl.components.Parameter[str],
                baseline: tfx.dsl.components.OutputArtifact[standard_artifacts.Model]) -> None:
    """Copy the version of ``model`` served from ``model_repo`` into ``baseline``.

    ``cache_key`` is the only thing TFX's cache can see of the world this task reads: the
    local runner passes the version served when it built the pipeline (an unchanged
    repository lets this task, the Evaluator and the Pusher come from the cache), a
    compiled Kubeflow spec a fixed string with caching turned off for this task. Either way
    the task itself reads what is served when it runs.
    """
    del cache_key
    try:
        version, path = model_repository.served_version(model_repo, model)
    except FileNotFoundError:
        baseline.set_int_custom_property(SERVED_VERSION, 0)
        return
    io_utils.copy_dir(path, path_utils.serving_model_dir(baseline.uri))
    baseline.set_int_custom_property(SERVED_VERSION, version)
    baseline.set_string_custom_property(SERVED_FROM, path)


def served_version(artifact) -> int | None:
    """The repository version a baseline artifact holds, or None when nothing was served."""
    return artifact.get_int_custom_property(SERVED_VERSION) or None


class _Executor(evaluator_executor.Executor):
    """TFX's Evaluator, without the baseline when ``ServedModel`` found nothing served, and
    blessing nothing when there is no candidate."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        reason = data_gate.not_trained(input_dict[standard_component_specs.MODEL_KEY][0])
        if reason:
            blessing = output_dict[standard_component_specs.BLESSING_KEY][0]
            io_utils.write_string_file(os.path.join(blessing.uri, constants.NOT_BLESSED_FILE_NAME), "")
            blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY, constants.NOT_BLESSED_VALUE)
            blessing.set_string_custom_property(data_gate.NOT_TRAINED, reason)
            return
        key = standard_component_specs.BASELINE_MODEL_KEY
        if input_dict.get(key) and not any(served_version(a) for a in input_dict[key]):
            input_dict = {k: v for k, v in input_dict.items() if k != key}
        super().Do(input_dict, output_dict, exec_properties)


class Evaluator(tfx.components.Evaluator):
    """``tfx.components.Evaluator`` that accepts an absent ``ServedModel`` baseline."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(_Executor)
