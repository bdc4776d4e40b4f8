"""Seconds on a CPU: for tests and smoke runs (the defaults are the tiny model)."""
from lmjax.config import default_config


def get_config():
  c = default_config()
  c.train.steps = 30
  return c
