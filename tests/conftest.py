"""Test-wide settings: offline, quiet, deterministic.

Set before TensorFlow is imported anywhere: oneDNN off gives bit-identical results run to run,
and no hub is reachable, so Hugging Face must never try the network.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"  # forced, not a default: the bit-identity tests (resume == uninterrupted,
#                                          same bytes on a re-run) need it whatever the caller's shell exports
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
