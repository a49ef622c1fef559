"""The one configuration module: names, paths, data formats, profiles and thresholds.

Everything another module needs to agree on lives here, so that the pipeline wiring,
the component module files, the CLI and the tests cannot drift apart.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from emotion_ai.components import spec
from emotion_ai.components.branches import EMOTION, KEYPOINTS, ModelBranch
from emotion_ai.components.spec import Augmentation, Gate, ModelParams

# --- process environment ----------------------------------------------------------------
# Set by each entry point (the CLI, the tests' conftest, the benchmarks; the image's ENV)
# before TensorFlow is first imported, never by importing a module. TFX 1.21 Trainers save
# with tf.keras, which must be the legacy Keras 2 (tf-keras): with Keras 3 saving fails.
RUNTIME_ENVIRONMENT = {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "1"}


def set_runtime_environment() -> None:
    """Apply ``RUNTIME_ENVIRONMENT`` where the process has not set a value of its own."""
    for name, value in RUNTIME_ENVIRONMENT.items():
        os.environ.setdefault(name, value)


# --- identity -------------------------------------------------------------------------
PIPELINE_NAME = "emotion-ai"  # Kubeflow V2 names must match [a-z0-9][a-z0-9-]*
# The checkout when running from one (``make run``); installed from a wheel (the Kubeflow
# image), the working directory, never site-packages.
_CHECKOUT = Path(__file__).resolve().parent.parent
PROJECT_ROOT = _CHECKOUT if (_CHECKOUT / "setup.py").is_file() else Path.cwd()

# --- default locations (all overridable on the command line or by environment) ---------
DATA_DIR = Path(os.environ.get("EMOTION_AI_DATA_DIR", PROJECT_ROOT / "data"))
PIPELINE_ROOT = Path(os.environ.get("EMOTION_AI_PIPELINE_ROOT", PROJECT_ROOT / "pipeline_output"))
MODEL_REPO = Path(os.environ.get("EMOTION_AI_MODEL_REPO", PROJECT_ROOT / "serving" / "model_repository"))
METADATA_FILE = "metadata.sqlite"  # under the pipeline root
# Where `emotion-ai serve --log-requests` records the images it is sent (their numbers only,
# serving/request_log.py) and where `run` reads them for skew (--serving-log).
REQUEST_LOG_DIR = Path(os.environ.get("EMOTION_AI_REQUEST_LOG", PROJECT_ROOT / "serving" / "request_log"))
REQUEST_LOG_SAMPLE = 0.1  # the fraction of predict requests recorded
REQUEST_LOG_MAX_MB = 64  # per model; the oldest day's records go first
# Drift between the newest span and the previous one, and skew between the training data and
# serving traffic (components/drift.py, TFDV's comparators), on the numbers that describe each
# image. Jensen-Shannon divergence runs from 0 (same histogram) to 1 (disjoint); two draws of
# a few hundred similar photos differ by about 0.01-0.05, a span photographed in dimmer light
# by 0.3 or more. The class mix is compared by the L-infinity distance: the largest change
# in one class's share. Two draws of 150 photos from the same mix differ by up to about 0.11
# by chance (the share of a class of 30 % wobbles by 5 points each), so the bar is 15 points.
DRIFT_JS_THRESHOLD = 0.1
SKEW_JS_THRESHOLD = 0.1
CLASS_MIX_LINF_THRESHOLD = 0.15
# How TFMA computes the Evaluator's 95 % confidence intervals: POISSON_BOOTSTRAP resamples the
# test split (TFMA's default of 20 replicates, each example drawn Poisson(1) times);
# JACKKNIFE is TFMA's cheaper delete-d alternative.
CONFIDENCE_INTERVAL_METHOD = "POISSON_BOOTSTRAP"
MODEL_REPO_KEEP_VERSIONS = 5  # versions per model kept in the serving repository


TRAIN_SPLIT, EVAL_SPLIT, TEST_SPLIT = "train", "eval", "test"
SPLIT_ROLES = {
    TRAIN_SPLIT: "fits the weights",
    EVAL_SPLIT: "picks the best epoch, stops early, calibrates key-point offsets",
    TEST_SPLIT: "gates the model (Evaluator); never seen by the Trainer",
}


@dataclasses.dataclass(frozen=True)
class Profile:
    """A named set of data sizes, hyperparameters and gates. ``params`` and ``gates`` are per
    branch name; a branch the profile does not name uses its registry defaults
    (``components/branches.py``)."""

    name: str
    sample_keypoint_rows: int  # rows the generator writes when data/ holds none
    sample_emotion_rows: int
    about: str = ""  # one line for the run summary and the report: what the profile is for
    params: Mapping[str, ModelParams] = dataclasses.field(default_factory=dict)
    gates: Mapping[str, Mapping[str, Gate]] = dataclasses.field(default_factory=dict)  # branch -> metric -> gate
    # CsvExampleGen's three splits, in hash buckets: train (fitting), eval (model selection:
    # best epoch, early stopping, the key-point offset calibration) and test (the Evaluator's
    # gate only; the Transform does not materialize it, so no Trainer can read it).
    train_hash_buckets: int = 3
    eval_hash_buckets: int = 1
    test_hash_buckets: int = 1
    # A production profile pushes to the default model repository; every other profile (open
    # gates, tiny data) to a repository of its own unless told otherwise (see model_repo_for).
    production: bool = False
    # Spans (components/spans.py: span-N or dated folders): each run trains on the newest this
    # many and leaves older ones out. Large enough by default that every span is kept.
    span_window: int = 10_000
    # Warm start (components/common/training.warm_start): each Trainer starts from the network
    # its branch serves now and trains this many epochs at a fraction of the learning rate,
    # without warm-up; with nothing served it trains the full schedule. 0: always from scratch.
    warm_start_epochs: int = 0
    warm_start_learning_rate_scale: float = 0.3

    def params_for(self, branch: ModelBranch) -> ModelParams:
        return self.params.get(branch.name, branch.default_params)

    def gates_for(self, branch: ModelBranch) -> Mapping[str, Gate]:
        return self.gates.get(branch.name, branch.default_gates)

    def with_params(self, branch: ModelBranch, **changes) -> Profile:
        """A copy whose ``branch`` parameters have ``changes``."""
        params = dataclasses.replace(self.params_for(branch), **changes)
        return dataclasses.replace(self, params={**self.params, branch.name: params})

    def with_gate(self, branch: ModelBranch, metric: str, **changes) -> Profile:
        """A copy whose gate on ``branch``'s ``metric`` has ``changes`` (``bound``, ``max_worse``)."""
        gates = dict(self.gates_for(branch))
        gates[metric] = dataclasses.replace(gates[metric], **changes)
        return dataclasses.replace(self, gates={**self.gates, branch.name: gates})

    @property
    def split_buckets(self) -> dict[str, int]:
        return {TRAIN_SPLIT: self.train_hash_buckets, EVAL_SPLIT: self.eval_hash_buckets,
                TEST_SPLIT: self.test_hash_buckets}

    @property
    def eval_fraction(self) -> float:
        """Share of the rows CsvExampleGen puts into the eval split."""
        return self.eval_hash_buckets / sum(self.split_buckets.values())


# Batches of the plain-Keras throughput reference after each Trainer of the real profiles
# (ModelParams.reference_steps; timed twice): 10-20 s per Trainer on 2 cores.
REFERENCE_STEPS = 15

PROFILES = {
    # Tiny data and one epoch: what tests and CI run. Each branch's registry defaults: small
    # networks, gates loose but real.
    "smoke": Profile(
        name="smoke",
        about="tiny data, one epoch: tests and CI",
        sample_keypoint_rows=160,
        sample_emotion_rows=250,
    ),
    # Real training: sized for the real datasets on a 2-core machine (45 minutes in all, issue 19):
    # short schedules, and the served graph runs each network once (flip_tta=False). No
    # distillation of the mirror average: in the whole profile at da3bb42 (quality.md) neither
    # branch's 4-5 distilling epochs beat its schedule's best epoch (key points 1.552 vs 1.524 px,
    # expressions 0.780 vs 0.784 on the eval rows), so both were dropped after costing 20 % of
    # the run; at cc1e023 the expressions' gained 0.005 (views.md, distill_*.md).
    # The stem pool keeps the convolutions cheap enough for many epochs (inside the Trainer at
    # cc1e023, quality.md: key points 112 training images/s, expressions 230; this machine has
    # also run 2-3x slower than that on some days); warm-up + cosine decay, best eval epoch kept.
    "full": Profile(
        name="full",
        about="production: the schedules real data needs",
        sample_keypoint_rows=2000,
        sample_emotion_rows=3000,
        # Key points: integral regression (a heatmap per point, soft-argmax), which beat a pooled
        # dense head on unseen people; GroupNorm so evaluation computes what training did; the
        # offset calibration removes the bias flip augmentation teaches (README, "The models";
        # the measurements are in benchmarks/results/ and the commit messages).
        params={
            KEYPOINTS.name: ModelParams(
                stage_filters=(32, 64, 128, 256), blocks_per_stage=2, epochs=32, batch_size=32, learning_rate=1e-3,
                dropout=0.1, stem_stride=2, stem_pool=True, head="soft_argmax", norm="group", warmup_epochs=3,
                weight_decay=0.05, calibrate_offsets=True, flip_tta=False, reference_steps=REFERENCE_STEPS),
            # Expressions overfit without regularization: AdamW's decay is scaled by the learning
            # rate (1e-4 is none at all), hence decay 0.05, random erasing and label smoothing;
            # more than 45 epochs did not help.
            # Class weights tempered (power 0.5): balanced ones weigh a Disgust row 17x a Happy
            # one and buy Disgust recall with everyone's precision (emotion_variants.md; whole
            # profile 0.758 / 0.713 -> 0.785 / 0.749 accuracy / macro-F1, quality.md at da3bb42).
            EMOTION.name: ModelParams(
                stage_filters=(32, 64, 128, 256), blocks_per_stage=2, epochs=20, batch_size=64, learning_rate=2e-3,
                dropout=0.3, stem_pool=True, warmup_epochs=2, label_smoothing=0.1, weight_decay=0.05,
                augmentation=Augmentation(erase_probability=0.25), flip_tta=False,
                class_weight_power=0.5, reference_steps=REFERENCE_STEPS),
        },
        gates={
            KEYPOINTS.name: {"rmse_px": Gate(bound=6.0, max_worse=0.05)},
            EMOTION.name: {"accuracy": Gate(bound=0.45, max_worse=0.005),
                           "macro_recall": Gate(bound=0.40, max_worse=0.01)},
        },
        # 8:1:1: the real key-point set is small (3,360 frames), so training keeps most of it;
        # a tenth (about 340 frames) each still chooses the epoch and gates the model.
        train_hash_buckets=8,
        production=True,
    ),
}
DEFAULT_PROFILE = "full"


def _sample_profile(full: Profile) -> Profile:
    """``full``'s networks, recipe, gates, split and sample data, with schedules sized for the
    embedded sample data: synthetic faces that the full schedules fit far past need (0.23 px
    and 0.997 accuracy after 32 and 20 epochs, issue 35), so that a first ``make run`` takes
    minutes, not half an hour. Not a production profile: its models go to a repository of
    their own, and the summary and report name it."""
    params = {name: dataclasses.replace(p, epochs=SAMPLE_EPOCHS[name], warmup_epochs=1)
              for name, p in full.params.items()}
    return dataclasses.replace(full, name=SAMPLE_PROFILE, params=params, production=False,
                               about=f"the full profile's networks on short schedules "
                                     f"({', '.join(f'{n} {e} epochs' for n, e in SAMPLE_EPOCHS.items())}), "
                                     f"for the embedded sample data; not a production model")


# The profile `emotion-ai run` takes when none is named and its data is the embedded sample
# data (generated and unchanged, or not there yet): see local_runner.choose_profile.
SAMPLE_PROFILE = "sample"
SAMPLE_EPOCHS = {KEYPOINTS.name: 6, EMOTION.name: 5}
PROFILES[SAMPLE_PROFILE] = _sample_profile(PROFILES["full"])


def model_repo_for(profile: Profile) -> Path:
    """The model repository a profile pushes to unless ``--model-repo`` says otherwise: the
    production profile's is ``MODEL_REPO``; any other profile gets a sibling of its own
    (``model_repository-smoke``), so a smoke run never replaces what a server is serving."""
    return MODEL_REPO if profile.production else MODEL_REPO.with_name(f"{MODEL_REPO.name}-{profile.name}")

# Local Beam: the FnApiRunner is what the DirectRunner would pick for these batch jobs; named
# explicitly because Beam 2.73's DirectRunner first tries Prism, whose binary it downloads at
# run time (no network here). In-memory mode: on 2 cores about twice as fast as
# multi_processing (measured), and one debuggable process.
BEAM_PIPELINE_ARGS = ("--runner=FnApiRunner", "--direct_running_mode=in_memory", "--direct_num_workers=1")
# Only while Beam runs in this process (the arguments above, no runner or worker environment
# of the user's): TFX's Beam components otherwise copy the installed tfx package (41 MB) into a
# new temporary folder and build an sdist of it for remote workers, at every component of every
# run (1.3 s each, and 330 MB a run left in /tmp: 11 GB in one day of tests here). In-process
# workers are this interpreter; TFX skips the build when a worker image is named, which the
# in-process runner never reads (tfx/utils/dependency_utils.make_beam_dependency_flags).
IN_PROCESS_BEAM_ARGS = ("--sdk_container_image=in-process",)


COMPONENTS_DIR = Path(spec.__file__).resolve().parent  # the module files' package, wherever installed


def code_fingerprint(branch: str | None = None) -> str:
    """Hash of the component code, passed to Transform/Trainer so that editing a model or
    a preprocessing function invalidates the TFX cache (module paths alone would not). With
    ``branch``, only the code that branch's modules use (its own package, ``common`` and the
    leaf ``spec``), so editing the expression model does not retrain the key-point model."""
    components = COMPONENTS_DIR
    files = ([components / "spec.py", *(components / "common").rglob("*.py"), *(components / branch).rglob("*.py")]
             if branch else list(components.rglob("*.py")))
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(str(path.relative_to(components)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def code_version() -> str:
    """``<git commit>[-dirty] / components <hash>``: which code a run used (the checkout's
    commit when there is one), for its report, summary and MLflow run."""
    import subprocess

    try:
        commit = subprocess.run(["git", "-C", str(PROJECT_ROOT), "describe", "--always", "--dirty", "--abbrev=10"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{commit or 'no git checkout'} / components {code_fingerprint()}"
