"""infer: text from a trained run.

- decode.py: samplers, cached and uncached generation, beam search, and `sample_run`, what
  `launch.sample` calls;
- kv_cache.py: the key-value cache of decoding.

May import: lmjax.core, lmjax.config, lmjax.data, lmjax.model, lmjax.train. Not eval, sweeps or
analysis (import-linter, .importlinter). Quantised weights, speculative decoding and minimum
Bayes risk go here.
"""
