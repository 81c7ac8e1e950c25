"""Process defaults applied before TensorFlow is imported: quiet start-up logs unless asked."""
import os

# "2" hides TF's INFO and WARNING start-up lines (oneDNN, CUDA probing); users can override.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
