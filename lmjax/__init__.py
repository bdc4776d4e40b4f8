"""lmjax: decoder-only language models in JAX, and the study of how they scale."""
__version__ = '0.1.0'
