"""What one predict request may cost ``emotion-ai serve``, checked before TensorFlow sees it.

A request's JSON is bounded by its byte size, but what it asks for is not: 10,000 pixel
strings make a batch whose test-time views need tens of GiB, and a PNG of a few hundred kB
may declare 20000 x 20000 pixels. So the server counts the instances (TF Serving's
``batching.config`` maximum), reads each encoded image's size from its header with Pillow
(nothing is decoded), and bounds the pixels of each and the decoded bytes of all. Pixel
strings are parsed once, by the model: its graph refuses a value that is not a finite
number in 0..255 (``common/image.decode_pixel_strings``), so TF Serving and KServe refuse it
too. The limits live in ``components.spec``.
"""
from __future__ import annotations

import io
import warnings

from PIL import Image

from emotion_ai.components import spec

DECODED_BYTES_PER_PIXEL = 4  # RGBA, the most a decoder holds per pixel before the grey conversion


class RequestRefused(ValueError):
    """A request the server will not run, with the HTTP status and the reason."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def check_batch(instances: int) -> None:
    if instances > spec.SERVING_MAX_BATCH:
        raise RequestRefused(413, f"{instances} instances in one request; the limit is {spec.SERVING_MAX_BATCH} "
                                  "(TF Serving's batching.config max_batch_size): split the request")


def image_header(data: bytes, index: int) -> tuple[str, int, int, str]:
    """``(format, width, height, mode)`` from the encoded image's header, nothing decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit below decides
            with Image.open(io.BytesIO(data)) as image:
                return image.format, image.width, image.height, image.mode
    except Image.DecompressionBombError as error:  # Pillow's own bound, far above ours
        raise RequestRefused(413, f"instance {index}: {error}; the limit is {spec.SERVING_MAX_IMAGE_PIXELS:,} "
                                  "pixels per image") from None
    except Exception as error:  # noqa: BLE001 - any unreadable header is the client's input
        raise RequestRefused(400, f"instance {index}: not a {', '.join(spec.SERVING_IMAGE_FORMATS)} image "
                                  f"({type(error).__name__}: {error})") from None


def check_image_size(width: int, height: int, index: int) -> None:
    if width * height > spec.SERVING_MAX_IMAGE_PIXELS:
        raise RequestRefused(413, f"instance {index}: a {width}x{height} image has {width * height:,} pixels; "
                                  f"the limit is {spec.SERVING_MAX_IMAGE_PIXELS:,} per image")


def check_images(images: list[bytes]) -> None:
    """Each encoded image: a format the signature decodes, at most ``SERVING_MAX_IMAGE_PIXELS``;
    all of them decoded: at most ``SERVING_MAX_DECODED_BYTES``."""
    check_batch(len(images))
    total = 0
    for index, data in enumerate(images):
        kind, width, height, _mode = image_header(data, index)
        if kind not in spec.SERVING_IMAGE_FORMATS:
            raise RequestRefused(400, f"instance {index}: a {kind} image; the model decodes "
                                      f"{', '.join(spec.SERVING_IMAGE_FORMATS)}")
        check_image_size(width, height, index)
        total += width * height * DECODED_BYTES_PER_PIXEL
    if total > spec.SERVING_MAX_DECODED_BYTES:
        raise RequestRefused(413, f"the request's images decode to {total:,} bytes; the limit is "
                                  f"{spec.SERVING_MAX_DECODED_BYTES:,} per request: send fewer or smaller images")


def check(inputs: dict[str, list]) -> None:
    """The decoded values of a request's inputs, by signature input name."""
    for name, values in inputs.items():
        values = values if isinstance(values, list) else [values]
        if name == spec.SERVING_IMAGES_INPUT and all(isinstance(v, bytes) for v in values):
            check_images(values)
        else:
            check_batch(len(values))
