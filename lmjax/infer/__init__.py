"""infer: text from a trained run.

- decode.py: samplers, cached and uncached generation, beam search;
- kv_cache.py: the key-value cache of decoding;
- samples.py: a run's model continuing text prompts; `sample_run`, what launch.sample calls.

May import: lmjax.core, lmjax.config, lmjax.data, lmjax.model, lmjax.train. Not eval (which
decodes through it), sweeps or analysis (import-linter, .importlinter). Quantised weights, speculative decoding and minimum
Bayes risk go here.
"""
