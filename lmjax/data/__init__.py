"""data: text in, batches out. TFDS datasets prepared to array_record, tokenizers, token stores,
and the batches of a run as a pure function of (seed, step).

- datasets.py: TFDS builders (`python_stdlib`, `local_text`) and catalogue datasets;
- tokenizers.py: byte-level, SentencePiece and Hugging Face tokenizer.json tokenizers;
- chat.py: supervised fine-tuning examples rendered to tokens with a loss mask;
- token_store.py: a split tokenised once into array_record shards, with its statistics;
- pipeline.py: windows under a per-epoch permutation, each process its rows of a step's batch;
- loader.py: the seam: a config in, the tokenizer, train iterator and evaluation batches out;
- prefetch.py: the next batches read and put on the devices by a background thread;
- prepare.py: launch.prepare as one call (prepare ahead, report each split's statistics).

May import: lmjax.core. Not the config tree (it reads the `config.data` it is given), the
model or anything above (import-linter, .importlinter). A new data source (fine-tuning
conversations, preference pairs, downstream task files) goes here.
"""
