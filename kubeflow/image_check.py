"""The image's build check of its TensorFlow variant (``kubeflow/Dockerfile``).

``cpu``: TensorFlow imports. ``gpu``: also the CUDA libraries TensorFlow loads for a GPU
(``tensorflow[and-cuda]``'s NVIDIA wheels) are there and load. No GPU or driver is needed
for that: the check proves the image can use one, not that a node has one.

    python -m emotion_ai.kubeflow.image_check cpu|gpu
"""
from __future__ import annotations

import ctypes
import glob
import os
import sys

# The libraries TensorFlow's GPU device needs at start-up, by their NVIDIA wheel package.
CUDA_LIBRARIES = {"nvidia.cuda_runtime": "libcudart.so*", "nvidia.cublas": "libcublas.so*",
                  "nvidia.cudnn": "libcudnn.so*", "nvidia.cufft": "libcufft.so*"}


def cuda_libraries() -> dict[str, str]:
    """Each required CUDA library's file, loaded; raises ``RuntimeError`` for a missing one."""
    import importlib

    found = {}
    for package, pattern in CUDA_LIBRARIES.items():
        try:
            module = importlib.import_module(package)
        except ImportError:
            raise RuntimeError(f"{package} is not installed: this TensorFlow cannot use a GPU") from None
        files = sorted(f for p in module.__path__ for f in glob.glob(os.path.join(p, "lib", pattern)))
        if not files:
            raise RuntimeError(f"{package} has no {pattern}")
        ctypes.CDLL(files[0])
        found[package] = files[0]
    return found


def main(variant: str) -> None:
    import tensorflow as tf

    info = tf.sysconfig.get_build_info()
    print(f"tensorflow {tf.__version__} (variant {variant}, CUDA build {info.get('is_cuda_build')})")
    if variant == "gpu":
        if not info.get("is_cuda_build"):
            raise SystemExit("the gpu variant's TensorFlow is not a CUDA build")
        for package, path in cuda_libraries().items():
            print(f"loads {os.path.basename(path)} ({package})")
        print(f"GPUs visible now: {len(tf.config.list_physical_devices('GPU'))} (none is expected without a GPU node)")
    elif variant != "cpu":
        raise SystemExit(f"unknown variant {variant!r}: cpu or gpu")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "cpu")
