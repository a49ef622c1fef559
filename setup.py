"""Emotion AI Pipeline: facial key points and expressions with TFX."""
from setuptools import find_packages, setup

setup(
    name="emotion-ai-pipeline",
    version="0.1.0",
    description="TFX pipeline that trains, gates, publishes and serves facial key-point and expression models",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["pipelines*", "components*", "data*", "serving*", "kubeflow*"]),
    # Every package the commands import. The pinned closure is constraints.txt
    # (`pip install . -c constraints.txt`; `make setup` installs it exactly).
    install_requires=[
        "tfx==1.21.0", "tensorflow==2.21.0", "tf-keras==2.21.0", "tensorflow-transform==1.21.0",
        "tensorflow-model-analysis==0.52.0", "tensorflow-serving-api", "ml-metadata==1.21.0",
        "apache-beam==2.73.0", "pandas", "numpy", "mlflow", "kfp==2.16.1", "fastapi", "uvicorn",
        "opencv-python-headless<5", "prometheus-client", "requests", "pyyaml", "pillow", "matplotlib", "click",
        "croniter", "filelock", "tqdm",
    ],
    entry_points={"console_scripts": ["emotion-ai=pipelines.cli:main"]},
)
