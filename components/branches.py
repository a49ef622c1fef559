"""The model branches: one registry entry per model, all that differs between them.

An entry names the branch's input format (the CSV header column that identifies it, the
staged columns, the image column and size), the transformed label and served output the
Evaluator compares, the metrics it gates on, its default hyperparameters and gates, and
the package that holds its code. That package fulfils one contract, module by module:

* ``formats``: ``check_row(raw row) -> staged record`` (``ValueError`` says what is wrong),
  ``derived_features(staged record)`` (the ``derived_columns``, strings), ``truth(staged
  records)``, ``points(outputs, i)`` (an output's points in the input's pixels, or None),
  ``describe(outputs, i, to_photo)`` (one served output as JSON, its points mapped into the
  photo), ``caption(described)`` and ``draw(photo, described, thickness)``;
* ``transform``: ``preprocessing_fn`` (TFX Transform);
* ``trainer``: ``run_fn`` (TFX Trainer), exporting the signatures of ``common.export``;
* ``metrics``: the Keras metric classes named in ``metrics`` below, ``summarize(truth,
  outputs) -> dict`` and ``summary_lines(result) -> list[str]`` (``emotion-ai evaluate``);
* ``report``: ``section(evaluation, examples, outputs)`` and ``data_samples(examples, split)``
  (HTML for the run report).

The pipeline wiring, the data readers, ``evaluate``, ``predict``, the report, MLflow
tracking and the KServe manifests all iterate over ``BRANCHES``; adding a model is adding
an entry here and its package. Importing this module imports no TensorFlow: the parts are
imported when first used (``ModelBranch.part``).
"""
from __future__ import annotations

import dataclasses
import importlib
from types import ModuleType

from emotion_ai.components import spec


@dataclasses.dataclass(frozen=True)
class Metric:
    """A metric the Evaluator computes and may gate on: a Keras metric TFMA instantiates."""

    name: str  # as TFMA reports it, e.g. "rmse_px"
    class_name: str
    module: str | None = None  # None: one of tf.keras.metrics
    higher_is_better: bool = True


@dataclasses.dataclass(frozen=True)
class ModelBranch:
    """One model of the DAG: its data, its gates and where its code lives."""

    name: str  # component ids, the repository folder, the served model name
    title: str  # for people: the report's section heading
    package: str  # the contract modules (see the module docstring)
    header_column: str  # a raw CSV with this header column holds this branch's data
    staged_columns: tuple[str, ...]  # a checked record's columns (the raw CSV must have them), in order
    derived_columns: tuple[str, ...]  # then, in the staged examples only: numbers for data validation
    image_column: str  # the pixel-string column the serving signatures take
    image_size: int
    label: str  # the transformed feature the Evaluator takes as the label
    output: str  # the served output it compares with it
    metrics: tuple[Metric, ...]
    default_params: spec.ModelParams  # when a profile names no parameters for this branch
    default_gates: dict[str, spec.Gate]  # metric name -> gate, when a profile names none
    # staged column -> the values the curated schema allows (``curated_schema.curate``)
    domains: dict[str, spec.Domain] = dataclasses.field(default_factory=dict)
    slice_columns: tuple[str, ...] = ()  # raw columns the Evaluator also slices by

    def component_id(self, kind: str) -> str:
        return f"{kind}_{self.name}"

    def part(self, module: str) -> ModuleType:
        """One module of the branch's package (``formats``, ``metrics``, ``report`` ...)."""
        return importlib.import_module(f"{self.package}.{module}")

    @property
    def preprocessing_fn(self) -> str:
        return f"{self.package}.transform.preprocessing_fn"

    @property
    def run_fn(self) -> str:
        return f"{self.package}.trainer.run_fn"

    @property
    def drift_columns(self) -> tuple[str, ...]:
        """What drift and skew are measured on (``components/drift.py``): the derived image
        numbers and the class index, whose mix is compared."""
        return (*(c for c, d in self.domains.items() if d.categorical), *self.derived_columns)

    def metric(self, name: str) -> Metric:
        return next(m for m in self.metrics if m.name == name)


# Whatever the dataset: grey levels, their spread and their Laplacian's (image_stats). A
# uniform image (contrast under 1 grey level) is no face: a blank frame. A face in dim light,
# out of focus, is still one (contrast about 3 at 45% light; the real data's least is 15):
# a span of those is drift, reported, not an anomaly that stops training.
_IMAGE_DOMAINS = {spec.IMAGE_STATISTICS[0]: spec.Domain(0.0, 255.0), spec.IMAGE_STATISTICS[1]: spec.Domain(1.0, 128.0),
                  spec.IMAGE_STATISTICS[2]: spec.Domain(0.0, 1024.0)}

KEYPOINTS = ModelBranch(
    name="keypoints",
    title="Key points",
    package="emotion_ai.components.keypoints",
    header_column=spec.KEYPOINT_IMAGE_COLUMN,
    staged_columns=(*spec.KEYPOINT_COLUMNS, spec.KEYPOINT_IMAGE_COLUMN),
    derived_columns=(*spec.IMAGE_STATISTICS, *spec.FACE_FRAMING),
    # The Kaggle framing: eye centres 21.6-45.3 px apart, the labelled points' mean within
    # 38-58 px of the 96x96 frame (shared data, all rows); MISSING_COORDINATE allowed.
    domains={**{c: spec.Domain(spec.MISSING_COORDINATE, spec.KEYPOINT_IMAGE_SIZE) for c in spec.KEYPOINT_COLUMNS},
             **_IMAGE_DOMAINS,
             spec.FACE_FRAMING[0]: spec.Domain(spec.MISSING_COORDINATE, 64.0),
             spec.FACE_FRAMING[1]: spec.Domain(24.0, 72.0), spec.FACE_FRAMING[2]: spec.Domain(24.0, 72.0)},
    image_column=spec.KEYPOINT_IMAGE_COLUMN,
    image_size=spec.KEYPOINT_IMAGE_SIZE,
    label=spec.KEYPOINTS_PIXELS,
    output=spec.KEYPOINTS_OUTPUT,
    # RMSE in pixels over the known coordinates (Kaggle's metric)
    metrics=(Metric("rmse_px", "MaskedPixelRMSE", "emotion_ai.components.keypoints.metrics", higher_is_better=False),),
    default_params=spec.ModelParams(stage_filters=(8, 16), blocks_per_stage=1, epochs=1, batch_size=32,
                                    learning_rate=2e-3, stem_stride=2, head="soft_argmax", norm="group",
                                    calibrate_offsets=True),
    default_gates={"rmse_px": spec.Gate(bound=60.0, max_worse=1e9)},
)

EMOTION = ModelBranch(
    name="emotion",
    title="Expressions",
    package="emotion_ai.components.emotion",
    header_column=spec.EMOTION_PIXELS_COLUMN,
    staged_columns=(spec.EMOTION_LABEL_COLUMN, spec.EMOTION_PIXELS_COLUMN),
    derived_columns=spec.IMAGE_STATISTICS,
    # A label outside the five classes means another labelling (FER2013's seven classes
    # number them differently): the whole span's labels are suspect, not just that row.
    domains={spec.EMOTION_LABEL_COLUMN: spec.Domain(0, len(spec.EMOTION_CLASSES) - 1, categorical=True),
             **_IMAGE_DOMAINS},
    image_column=spec.EMOTION_PIXELS_COLUMN,
    image_size=spec.EMOTION_IMAGE_SIZE,
    label=spec.EMOTION_LABEL,
    output=spec.EMOTION_OUTPUT,
    # accuracy within a true-class slice is that class's recall
    metrics=(Metric("accuracy", "SparseCategoricalAccuracy"),
             Metric("macro_recall", "MacroRecall", "emotion_ai.components.emotion.metrics")),
    default_params=spec.ModelParams(stage_filters=(8, 16), blocks_per_stage=1, epochs=1, batch_size=32,
                                    learning_rate=2e-3, tta_shift_px=3),
    default_gates={"accuracy": spec.Gate(bound=0.0, max_worse=1.0),
                   "macro_recall": spec.Gate(bound=0.0, max_worse=1.0)},
    slice_columns=(spec.EMOTION_LABEL_COLUMN,),
)

# The registry. A list, so that every module that imported it sees a branch registered later.
BRANCHES: list[ModelBranch] = []


def register(branch: ModelBranch) -> ModelBranch:
    """Add ``branch`` to the DAG and to everything that iterates over the branches."""
    for other in BRANCHES:
        if branch.name == other.name or branch.header_column == other.header_column:
            raise ValueError(f"branch {branch.name!r} clashes with {other.name!r} "
                             "(names and identifying header columns must be unique)")
    BRANCHES.append(branch)
    return branch


def unregister(name: str) -> None:
    BRANCHES.remove(by_name(name))


register(KEYPOINTS)
register(EMOTION)


def by_name(name: str) -> ModelBranch:
    for branch in BRANCHES:
        if branch.name == name:
            return branch
    raise KeyError(f"no model branch {name!r} (branches: {', '.join(b.name for b in BRANCHES)})")
