"""Hugging Face checkpoints in and out (lmjax/train/hf_runs.py, lmjax/model/hf.py).

  python -m launch.convert --from_hf=HF_DIR --workdir=OUT [--seq_len=1024]
  python -m launch.convert --to_hf=HF_DIR --workdir=RUN [--step=S]
  python -m launch.convert --to_peft=ADAPTER_DIR --workdir=LORA_RUN [--step=S]
  python -m launch.convert --merge_lora=OUT --workdir=LORA_RUN [--step=S]

--from_hf writes OUT, a run directory of the imported model: config.json, checkpoints/0 (its
params and a fresh optimizer state) and lmjax_config.py, a config file with the model's fields
and train.init_from=OUT. `launch.eval` and `launch.sample --workdir=OUT` use it as it is;
`python -m launch.train --config=OUT/lmjax_config.py --workdir=NEW --config.data....` trains on
from the imported params (any data and optimizer; the model fields must stay). OUT is built in a
temporary directory and renamed into place, so a failure leaves nothing.

--to_hf writes config.json and model.safetensors of a llama-style or gpt2-style run's params
(newest checkpoint or --step) into HF_DIR, which transformers' from_pretrained loads, and the
run's tokenizer (byte-level or a tokenizer.json; not SentencePiece) for AutoTokenizer, its
separator as BOS and EOS: lm-evaluation-harness's `hf` model evaluates the export as
`launch.harness` evaluates the run. A LoRA run (model.lora_rank > 0) exports merged.

--to_peft writes a LoRA run's adapters as a PEFT adapter (adapter_config.json,
adapter_model.safetensors) that peft.PeftModel.from_pretrained loads onto the --to_hf export of
its base run. --merge_lora writes OUT, a run directory of the LoRA run's merged params, to start
from (train.init_from=OUT) or evaluate like any run.

Quantised models are not exported: lmjax quantises at evaluation and sampling time
(launch.eval/launch.sample --quantize) in qwix's layout, which transformers does not read, so
--quantize is refused in one line; export the float model and quantise it where it is loaded
(bitsandbytes, GPTQ). A run trained with train.quantize=int8 keeps float weights and exports as
any run.

Exit status 2 for a malformed directory, an unsupported model or a bad flag (one line).
"""
from absl import flags, logging

from lmjax.core.cli import fail, run
from lmjax.train.hf_runs import export_hf, export_peft, import_hf, merge_lora

_FROM = flags.DEFINE_string('from_hf', None, 'A Hugging Face model directory to import.')
_TO = flags.DEFINE_string('to_hf', None, 'A directory to export the run to.')
_PEFT = flags.DEFINE_string('to_peft', None, 'A directory to export a LoRA run\'s adapters to '
                            '(PEFT\'s format).')
_MERGE = flags.DEFINE_string('merge_lora', None, 'A run directory to write a LoRA run\'s merged '
                             'model to.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'The lmjax run directory (written by --from_hf, '
                               'read by --to_hf).')
_STEP = flags.DEFINE_integer('step', None, '--to_hf, --to_peft, --merge_lora: the checkpoint '
                             'step (default: newest).')
_QUANTIZE = flags.DEFINE_string('quantize', None, 'Refused: quantised models are not exported '
                                '(see the module docstring).')
_SEQ_LEN = flags.DEFINE_integer('seq_len', 0, '--from_hf: data.seq_len of the imported config '
                                '(0: the model\'s positions, at most 1024).')


def main():
  logging.set_verbosity(logging.ERROR)  # orbax warns about every read-only manager
  if _QUANTIZE.value:
    fail(f'--quantize={_QUANTIZE.value}: quantised models are not exported; export the float '
         'model (--to_hf) and quantise it in transformers, or evaluate and sample a run '
         'quantised with launch.eval/launch.sample --quantize')
  given = [f for f in (_FROM, _TO, _PEFT, _MERGE) if f.value]
  if len(given) != 1:
    fail('give exactly one of --from_hf=HF_DIR (import), --to_hf=HF_DIR (export), '
         '--to_peft=DIR (a LoRA run\'s adapters) and --merge_lora=OUT (a LoRA run merged)')
  if not _WORKDIR.value:
    fail('--workdir is required: the lmjax run directory to write or read')
  if _FROM.value:
    import_hf(_FROM.value, _WORKDIR.value, _SEQ_LEN.value)
  elif _TO.value:
    export_hf(_WORKDIR.value, _TO.value, _STEP.value)
  elif _PEFT.value:
    export_peft(_WORKDIR.value, _PEFT.value, _STEP.value)
  else:
    merge_lora(_WORKDIR.value, _MERGE.value, _STEP.value)


if __name__ == '__main__':
  run(main)
