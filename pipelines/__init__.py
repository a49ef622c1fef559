"""Pipeline wiring, configuration, runners and the ``emotion-ai`` command line."""
import os

# Must precede the first TensorFlow import anywhere in the process (see components/).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
