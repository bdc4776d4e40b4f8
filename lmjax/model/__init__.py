"""model: the decoder-only transformer and what is computed from its config alone.

- transformer.py: the Flax linen model, every architectural choice a field;
- layers.py: what its layers share (parameters with logical axes, the matmul, the MLP);
- moe.py: the mixture-of-experts MLP (routers, grouped matmuls, auxiliary losses);
- spec.py: `ModelConfig`, the fields of `config.model` (jax-free, as flops.py is);
- attention.py: attention kernels by name; blocked_attention.py: the CPU kernel;
- remat.py: recomputation policies by name;
- flops.py: exact parameter counts (`N`, `N_no_emb`), FLOPs per token, `config_counts` of a
  config, peaks and MFU;
- hf.py: Hugging Face checkpoints (config.json, safetensors: LLaMA, Mistral, Qwen2, Mixtral,
  GPT-2) to model fields and params, and back, in NumPy.

May import: lmjax.core, lmjax.config. Not data, training or anything above (import-linter,
.importlinter). LoRA and adapters go here too.
"""
