"""SFT examples (lmjax/data/chat.py): the plain template, a loss mask on exactly the assistant's
tokens and the token that ends each turn, prompt/completion pairs, and bad examples in one
line."""
import json

import numpy as np
import pytest

from lmjax.data import chat
from lmjax.data.tokenizers import ByteTokenizer

TOK = ByteTokenizer()
CHAT = {'messages': [{'role': 'system', 'content': 'Be brief.'},
                     {'role': 'user', 'content': 'Add 2 and 3.'},
                     {'role': 'assistant', 'content': '5'},
                     {'role': 'user', 'content': 'Now é×2?'},
                     {'role': 'assistant', 'content': '10 ✓'}]}


def test_the_mask_is_exactly_the_assistant_turns_and_their_ends():
  tokens, mask = chat.render(CHAT, TOK, seq_len=512)
  text = ('<|system|>\nBe brief.\n<|user|>\nAdd 2 and 3.\n<|assistant|>\n5\n'
          '<|user|>\nNow é×2?\n<|assistant|>\n10 ✓')
  assert tokens[0] == TOK.sep_id and tokens[-1] == TOK.sep_id
  assert bytes(tokens[1:-1].astype(np.uint8)).decode() == text
  learned = tokens[mask == 1]
  # '5' and its newline, '10 ✓' (6 bytes) and the separator that ends the document
  assert bytes(learned[:-1].astype(np.uint8)).decode() == '5\n10 ✓' and learned[-1] == TOK.sep_id
  assert mask.sum() == 2 + len('10 ✓'.encode()) + 1
  assert mask[0] == 0 and len(mask) == len(tokens)


def test_a_prompt_completion_pair_learns_the_completion_and_the_end():
  tokens, mask = chat.render({'prompt': 'def f(x):\n', 'completion': '    return x\n'}, TOK, 64)
  assert bytes(tokens[mask == 1][:-1].astype(np.uint8)).decode() == '    return x\n'
  assert mask[:1 + len('def f(x):\n')].sum() == 0 and tokens[-1] == TOK.sep_id


def test_a_long_example_is_cut_and_one_with_no_room_for_the_answer_is_refused():
  tokens, mask = chat.render({'prompt': 'p' * 10, 'completion': 'c' * 100}, TOK, seq_len=32)
  assert len(tokens) == 33 and mask[11:].all() and not mask[:11].any()
  with pytest.raises(chat.ChatDataError, match='no room for the answer'):
    chat.render({'prompt': 'p' * 40, 'completion': 'c'}, TOK, seq_len=32, where='x.jsonl line 3')


@pytest.mark.parametrize('example, message', [
    ({'messages': [{'role': 'robot', 'content': 'hi'}]},
     "message 0 has role 'robot'; allowed: system, user, assistant"),
    ({'messages': [{'role': 'user', 'content': 'hi'}, {'role': 'assistant', 'content': ' '}]},
     'message 1 (assistant) is empty; nothing to learn'),
    ({'messages': [{'role': 'user', 'content': 'hi'}]}, 'no assistant message'),
    ({'prompt': 'p', 'completion': ''}, 'the completion is empty'),
    ({'text': 'x'}, 'expected "messages" or "prompt" and "completion"; has text'),
])
def test_bad_examples_are_one_line_naming_the_line(tmp_path, example, message):
  path = tmp_path / 'sft.jsonl'
  path.write_text(json.dumps(CHAT) + '\n\n' + json.dumps(example) + '\n')
  with pytest.raises(chat.ChatDataError) as e:
    chat.read_jsonl(str(path), TOK, 128)
  assert str(e.value) == f'{path} line 3: {message}' or (
      str(e.value).startswith(f'{path} line 3: ') and message in str(e.value))
  assert '\n' not in str(e.value)


def test_a_tokenizer_json_merging_across_the_boundary_gives_the_merged_token_to_the_answer(
    tmp_path):
  from tokenizers import Tokenizer, models
  from lmjax.data.tokenizers import HFTokenizer
  vocab = {c: i for i, c in enumerate(['<sep>', 'a', 'b', 'ab', 'c'])}
  tok = Tokenizer(models.BPE(vocab=vocab, merges=[('a', 'b')]))
  path = tmp_path / 'tokenizer.json'
  path.write_text(tok.to_str())
  hf = HFTokenizer(str(path), '<sep>')
  tokens, mask = chat.render({'prompt': 'ca', 'completion': 'bc'}, hf, 16)
  assert tokens.tolist() == [0, 4, 3, 4, 0]  # <sep> c ab c <sep>: 'a'+'b' merged
  assert mask.tolist() == [0, 0, 0, 1, 1]  # the merged token keeps the prompt's side


def _examples():
  rng = np.random.default_rng(0)
  out = []
  for i in range(12):
    prompt = 'q' * int(rng.integers(1, 9)) + str(i)
    out.append(chat.render({'prompt': prompt + ':', 'completion': 'a' * int(rng.integers(1, 7))},
                           TOK, seq_len=64))
  return out


def test_packing_keeps_each_examples_mask_wherever_its_tokens_land():
  from lmjax.data import pipeline
  examples = _examples()
  store = chat.to_store(examples)
  assert store.n_documents == 12 and store.n_tokens == sum(len(t) for t, _ in examples)
  windows = pipeline.Windows(store, seq_len=16, seed=3)
  batches = pipeline.Batches(windows, batch_size=2)
  for step in range(4):
    batch = batches.batch(step)
    for j in range(2):
      start = windows.window(step * 2 + j) * windows.length
      np.testing.assert_array_equal(batch['targets'][j], store.tokens[start + 1:start + 17])
      # Weight 1 exactly on the learned targets that continue their input's document (a
      # target that starts a document is its separator, never learned).
      starts = set(store.starts.tolist())
      expected = [store.mask[s] * (s not in starts) for s in range(start + 1, start + 17)]
      np.testing.assert_array_equal(batch['weights'][j], expected)
  assert store.mask.sum() > 0 and (store.mask == 0).sum() > 0


def test_the_loss_ignores_the_prompt_targets_and_learns_the_answers():
  """Changing a target the mask leaves out changes nothing in the objective (no gradient flows
  from prompt positions); changing a learned one does."""
  import jax

  from lmjax.config import default_config, resolve
  from lmjax.data import pipeline
  from lmjax.train.steps import build_model_and_optimizer, init_params, loss_sums
  c = default_config()
  c.data.seq_len = 16
  c = resolve(c)
  model, _ = build_model_and_optimizer(c)
  params = init_params(model, c, jax.random.PRNGKey(0))
  store = chat.to_store(_examples())
  batch = pipeline.Batches(pipeline.Windows(store, 16, seed=0), batch_size=2).batch(0)
  objective = lambda b: float(loss_sums(params, model, b)[0])
  base = objective(batch)
  weights = batch['weights']
  masked = np.argwhere(weights == 0)[0]
  learned = np.argwhere(weights == 1)[0]
  for (j, t), changes in ((masked, False), (learned, True)):
    other = {k: v.copy() for k, v in batch.items()}
    other['targets'][j, t] = (other['targets'][j, t] + 1) % 256
    assert (objective(other) != base) == changes
  assert 0 < weights.sum() < weights.size


CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + "
          "'<|im_end|>' + '\\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def _chatml_tokenizer(tmp_path):
  """A byte-level tokenizer.json with ChatML's special tokens, its chat template in
  tokenizer_config.json as transformers saves it."""
  from tokenizers import Tokenizer

  from lmjax.data.tokenizers import byte_tokenizer_json
  tok = Tokenizer.from_str(byte_tokenizer_json())
  tok.add_special_tokens(['<|im_start|>', '<|im_end|>', '<|endoftext|>'])
  path = tmp_path / 'tokenizer.json'
  path.write_text(tok.to_str())
  (tmp_path / 'tokenizer_config.json').write_text(json.dumps(
      {'chat_template': CHATML, 'eos_token': '<|endoftext|>', 'bos_token': None}))
  return str(path)


def test_a_tokenizers_own_chat_template_renders_as_transformers_and_masks_assistant_turns(
    tmp_path):
  """The template read from beside tokenizer.json renders every conversation exactly as
  transformers' apply_chat_template does, and the learned tokens are each assistant message's
  content and the `<|im_end|>` and newline that close its turn."""
  transformers = pytest.importorskip('transformers')
  from lmjax.data import chat_template
  from lmjax.data.tokenizers import HFTokenizer
  path = _chatml_tokenizer(tmp_path)
  reference = transformers.PreTrainedTokenizerFast(tokenizer_file=path, chat_template=CHATML)
  template = chat_template.load(path)
  tok = HFTokenizer(path)
  for messages in (CHAT['messages'], CHAT['messages'][1:3]):
    for generation in (False, True):
      assert template.render(messages, generation) == reference.apply_chat_template(
          messages, tokenize=False, add_generation_prompt=generation)
    tokens, mask = chat.render({'messages': messages}, tok, 256, template=template)
    want = reference.apply_chat_template(messages, tokenize=True)
    want = want['input_ids'] if hasattr(want, 'keys') else want
    assert tokens[0] == tok.sep_id and list(tokens[1:]) == list(want)
    learned = tok.decode(tokens[mask == 1])
    assert learned == ''.join(m['content'] + '<|im_end|>\n' for m in messages
                              if m['role'] == 'assistant')


def test_a_template_that_does_not_extend_its_prefixes_is_refused(tmp_path):
  from lmjax.data import chat_template
  from lmjax.data.tokenizers import HFTokenizer
  path = _chatml_tokenizer(tmp_path)
  # Renders the number of messages first: a longer conversation is not an extension.
  (tmp_path / 'chat_template.jinja').write_text('{{ messages|length }}' + CHATML)
  with pytest.raises(chat_template.ChatTemplateError, match='message 2 as an extension'):
    chat.render(CHAT, HFTokenizer(path), 256, 'line 1', chat_template.load(path))


def test_without_the_mask_training_counts_every_token_and_evaluation_the_answers(tmp_path):
  from lmjax.config import default_config, resolve
  path = tmp_path / 'pairs.jsonl'
  path.write_text(''.join(json.dumps({'prompt': f'q{i}', 'completion': f'a{i}'}) + '\n'
                          for i in range(20)))
  stores = {}
  for mask in ('completion', 'all'):
    c = default_config()
    c.data.dataset, c.data.paths, c.data.loss_mask = 'chat_jsonl', str(path), mask
    stores[mask] = chat.load(resolve(c).data, TOK)
  (train, evaluation), (train_all, evaluation_all) = stores['completion'], stores['all']
  assert train.mask.min() == 0 and train_all.mask.min() == 1
  np.testing.assert_array_equal(evaluation.mask, evaluation_all.mask)
  assert evaluation.mask.min() == 0 and evaluation.n_documents == 1
