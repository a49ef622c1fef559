"""The leaf every layer agrees on: names, sizes, classes and model parameters.

Column and feature names of both datasets, image sizes, the expression classes, the
transformed feature and model output names, and the hyperparameter classes the Trainers
read. It imports nothing of the project, so the component module files, the data readers,
the serving code and the pipeline wiring can all depend on it without depending on each
other. Paths, profiles, gates and Beam arguments live one layer up, in
``emotion_ai.pipelines.config``.
"""
from __future__ import annotations

import dataclasses
import json

# Rows refused by the ExampleGen's checks, in its Examples artifact's folder.
REJECTED_ROWS_FILE = "rejected_rows.csv"
# Beside it: each staged row's file and drift columns (components/drift.py).
SPAN_FEATURES_FILE = "span_features.csv"

# Custom properties of the Evaluator's baseline artifact (components/served_baseline.py).
SERVED_VERSION = "served_version"  # the repository version served when the run started; 0: none
SERVED_FROM = "served_from"  # the version folder it was copied from

# --- serving limits: what one request may cost ``emotion-ai serve`` ------------------
# Checked before any tensor is made or any image decoded; each breach is a 4xx naming it.
SERVING_MAX_BATCH = 32  # instances per request; TF Serving with the pushed batching.config refuses more
SERVING_MAX_REQUEST_BYTES = 16 * 1024 * 1024  # the JSON body as sent
SERVING_MAX_IMAGE_PIXELS = 24_000_000  # width x height of one encoded image, read from its header (a 24 MP photo)
SERVING_MAX_DECODED_BYTES = 256 * 1024 * 1024  # all images of a request decoded (4 bytes a pixel, RGBA at most)
SERVING_IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP")  # what tf.io.decode_image reads
SERVING_REQUEST_SECONDS = 60.0  # a whole request (headers and body) arrives within this, or the connection is closed
SERVING_KEEP_ALIVE_SECONDS = 5.0  # an idle keep-alive connection is closed after this (uvicorn's own setting)
SERVING_MAX_CONNECTIONS = 200  # open connections; one more is answered 503 and closed at once (well under 1024 fds)
SERVING_LOAD_RETRY_SECONDS = (1.0, 60.0)  # a version that failed to load: retried after 1 s, doubling up to 60 s
SERVING_IMAGES_INPUT = "images"  # serving_default: encoded images
SERVING_PIXELS_INPUT = "pixels"  # serving_pixels: the datasets' space-separated pixel strings

# --- predict on photos: finding faces (serving/faces.py) ----------------------------
FACE_DETECTOR_MODEL = "SHORT"  # BlazeFace short-range (faces within about 2 m, head and shoulders)
FACE_MIN_SCORE = 0.7  # detections below are dropped (`predict --min-score`); see benchmarks/results/photos.md
FACE_MAX_OVERLAP = 0.5  # a box more than half inside a better-scored one is the same face, dropped
FACE_MIN_PIXELS = 16  # an image narrower than this has no face to find (a 1x1 image is not an error)
FACE_TILE_MIN = 192  # smallest square the finder also looks in: faces down to about 40 px
FACE_TILE_LEVELS = 3  # square sizes looked in (the shorter side, half, a quarter): about 100 tiles at 12 MP

# --- key points: Kaggle "Facial Keypoints Detection" layout --------------------------
KEYPOINT_NAMES = (
    "left_eye_center", "right_eye_center",
    "left_eye_inner_corner", "left_eye_outer_corner",
    "right_eye_inner_corner", "right_eye_outer_corner",
    "left_eyebrow_inner_end", "left_eyebrow_outer_end",
    "right_eyebrow_inner_end", "right_eyebrow_outer_end",
    "nose_tip",
    "mouth_left_corner", "mouth_right_corner",
    "mouth_center_top_lip", "mouth_center_bottom_lip",
)
# Points that trade places when the image is mirrored (the subject's left becomes the
# image's left); the other points map onto themselves.
KEYPOINT_MIRROR_PAIRS = (
    ("left_eye_center", "right_eye_center"),
    ("left_eye_inner_corner", "right_eye_inner_corner"),
    ("left_eye_outer_corner", "right_eye_outer_corner"),
    ("left_eyebrow_inner_end", "right_eyebrow_inner_end"),
    ("left_eyebrow_outer_end", "right_eyebrow_outer_end"),
    ("mouth_left_corner", "mouth_right_corner"),
)
KEYPOINT_COLUMNS = tuple(f"{name}_{axis}" for name in KEYPOINT_NAMES for axis in ("x", "y"))
KEYPOINT_IMAGE_COLUMN = "Image"
KEYPOINT_IMAGE_SIZE = 96
# Staged CSVs write a missing coordinate as this value, so every column is always present
# and the schema stays fixed-length; the model masks it out of the loss and the metrics.
MISSING_COORDINATE = -1.0

# --- expressions: FER2013-derived layout ---------------------------------------------
EMOTION_LABEL_COLUMN = "emotion"
EMOTION_PIXELS_COLUMN = "pixels"
EMOTION_CLASSES = ("Angry", "Disgust", "Sad", "Happy", "Surprise")
EMOTION_IMAGE_SIZE = 48

# --- numbers derived from each example for data validation ---------------------------
# Computed by the row-checking ExampleGen (``common/image_stats``, ``<branch>/formats``),
# described by StatisticsGen, checked by ExampleValidator against the curated schema and
# compared across spans for drift; no model reads them.
IMAGE_STATISTICS = ("image_brightness", "image_contrast", "image_sharpness")  # grey levels
# Key points: where the labelled face is and how big (pixels of the 96x96 frame), from the
# labels: the eye-centre distance and the mean of the labelled points.
FACE_FRAMING = ("face_eye_distance", "face_center_x", "face_center_y")

# --- transformed feature names (Transform output, Trainer input, TFMA labels) ---------
IMAGE_FEATURE = "image"  # float32 [H*W], standardized
# float32 [1] each: the dataset mean and deviation that standardized it (the same in every
# row); the exported model reads them to scale images it decodes (common/image.image_features)
IMAGE_SCALING = ("image_scaling_mean", "image_scaling_std")
KEYPOINTS_TARGET = "keypoints"  # float32 [30], normalized to about [-1, 1], 0 where missing
KEYPOINTS_MASK = "keypoints_mask"  # float32 [30], 1 where the coordinate is known
KEYPOINTS_PIXELS = "keypoints_px"  # float32 [30], pixels, MISSING_COORDINATE where missing
EMOTION_LABEL = "label"  # int64 class index
KEYPOINTS_OUTPUT = "keypoints"  # model output: 30 coordinates in pixels
EMOTION_OUTPUT = "probabilities"  # model output: 5 class probabilities


@dataclasses.dataclass(frozen=True)
class Gate:
    """An Evaluator gate on one metric: ``bound`` is the floor of a higher-is-better metric
    (the ceiling of a lower-is-better one); ``max_worse`` is how much worse than the baseline
    the candidate may be, in the metric's units (negative: it must improve by that much)."""

    bound: float
    max_worse: float


@dataclasses.dataclass(frozen=True)
class Domain:
    """The values a staged column may take, written into the curated schema: ExampleValidator
    flags a split holding any value outside them. ``categorical``: an integer class index,
    so that TFDV counts its values (the class mix) instead of taking a mean."""

    min: float
    max: float
    categorical: bool = False


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Training-only augmentation (``emotion_ai.components.common.augment``); never at eval or serving.

    Geometry is in normalized coordinates ([-1, 1] across the image), so the same values
    mean the same thing for 96x96 key-point frames and 48x48 expression images.
    """

    flip_probability: float = 0.5  # horizontal flip (key points: x mirrored, left/right swapped)
    max_rotation_deg: float = 12.0
    max_log_scale: float = 0.08
    max_shift: float = 0.06  # fraction of the half-width
    brightness: float = 0.25  # in standardized units
    contrast: float = 0.25  # relative
    erase_probability: float = 0.0  # random erasing; expressions only: it would hide labelled points
    erase_area: tuple[float, float] = (0.02, 0.2)  # fraction of the image
    erase_aspect: tuple[float, float] = (0.3, 3.3)


@dataclasses.dataclass(frozen=True)
class ModelParams:
    """Hyperparameters of one model; both trainers read them from custom_config."""

    stage_filters: tuple[int, ...]
    blocks_per_stage: int
    epochs: int
    batch_size: int
    learning_rate: float
    dropout: float = 0.0
    stem_stride: int = 1  # 2 halves the resolution before the residual stages (96x96 input)
    stem_pool: bool = False  # 3x3/2 max pool after the stem (ResNet); about 4x cheaper training
    # "pool": global average pooling + dense; "flatten": the last feature map flattened + dense;
    # "soft_argmax" (key points only): a heatmap per point, coordinates as its expected position
    head: str = "pool"
    norm: str = "batch"  # "batch" or "group" normalization in the residual network
    augmentation: Augmentation | None = Augmentation()  # training split only; None: off
    warmup_epochs: int = 1  # linear learning-rate warm-up, then cosine decay to 0 over the epochs
    weight_decay: float = 1e-4  # AdamW, decoupled
    label_smoothing: float = 0.0  # expressions only
    # Expressions: each class's loss weight is its inverse frequency raised to this power
    # (1: every class weighs as much in total, 0: no weighting); components/emotion/trainer.py.
    class_weight_power: float = 1.0
    # Test-time augmentation in the served graph: the mean over the image and its mirror
    # (flip_tta), each also shifted by +-tta_shift_px pixels on a 3x3 grid (0: not shifted).
    # With distill_epochs these are the teacher's views and the served graph runs once.
    flip_tta: bool = True
    tta_shift_px: int = 0
    # Distillation (components/common/training.distill): after the schedule, this many epochs
    # in which the targets are blended with a frozen copy's average over the test-time views
    # above (``distill_weight`` of the teacher), at ``distill_learning_rate_scale`` of the
    # learning rate; the network is then served in one pass, the views live in its weights.
    # 0: no distillation, the served graph averages the views.
    distill_epochs: int = 0
    distill_weight: float = 0.5
    distill_learning_rate_scale: float = 0.3
    # Key points: subtract the served prediction's mean error per coordinate on the eval
    # split (see components/keypoints/trainer.offset_correction).
    calibrate_offsets: bool = False
    # Key points, soft_argmax head: heatmaps at the stem's resolution (48x48 in the full
    # profile) instead of the first stage's (24x24); see keypoints/model.py.
    fine_heatmaps: bool = False
    # Key points: the pointwise training loss, "huber" or "wing" (keypoints/model.py).
    keypoint_loss: str = "huber"
    # After training, this many batches of random tensors through a fresh copy of the network
    # in plain Keras (same batch size, optimizer and loss; common/training.reference_rate):
    # the log and the history then give the Trainer's training images/s beside what this CPU
    # does with the same network that day, so a slow day and a slow change look different
    # (issue 35). 0: no reference (the tests' tiny networks).
    reference_steps: int = 0

    def __post_init__(self):
        if self.head not in ("pool", "flatten", "soft_argmax"):
            raise ValueError(f"ModelParams.head must be pool, flatten or soft_argmax, not {self.head!r}")
        if self.norm not in ("batch", "group"):
            raise ValueError(f"ModelParams.norm must be batch or group, not {self.norm!r}")
        if self.keypoint_loss not in ("huber", "wing"):
            raise ValueError(f"ModelParams.keypoint_loss must be huber or wing, not {self.keypoint_loss!r}")
        if self.class_weight_power < 0:
            raise ValueError(f"ModelParams.class_weight_power must be >= 0, not {self.class_weight_power!r}")

    def to_dict(self) -> dict:
        """JSON-friendly values (the Trainer's ``custom_config``)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, values: dict) -> ModelParams:
        """Inverse of ``to_dict`` (JSON turned the tuples into lists)."""
        values = dict(values, stage_filters=tuple(values["stage_filters"]))
        if values.get("augmentation") is not None:
            aug = values["augmentation"]
            values["augmentation"] = Augmentation(**{k: tuple(v) if isinstance(v, list) else v for k, v in aug.items()})
        return cls(**values)

    def flat(self) -> dict[str, str]:
        """``name -> value`` strings, nested ones as ``augmentation.max_shift`` (for MLflow)."""
        flat = {}
        for name, value in dataclasses.asdict(self).items():
            if isinstance(value, dict):
                flat.update({f"{name}.{k}": str(v) for k, v in value.items()})
            else:
                flat[name] = str(value)
        return flat
