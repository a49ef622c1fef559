"""Component logic: Transform/Trainer module files and model definitions per branch."""
import os

# TFX 1.21 Trainers save with tf.keras; with Keras 3 behind tf.keras saving fails, so the
# legacy Keras 2 (tf-keras) must be selected before TensorFlow is first imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
