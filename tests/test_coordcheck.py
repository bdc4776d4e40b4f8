"""launch.coordcheck: μP's coordinate check (Yang et al. 2022, Fig. 5) through the command line,
on the default corpus: under μP each activation's size stays within a small factor across widths
(and, with CompleteP, depths); under SP the output logits and the blocks' outputs grow."""
import json
import subprocess
import sys

import pytest

from lmjax.train.coordcheck import CoordCheck

pytestmark = pytest.mark.slow  # 12 shapes, 4 steps each


def _run(*args):
  return subprocess.run([sys.executable, '-m', 'launch.coordcheck',
                         '--config=experiments/configs/tiny.py', *args],
                        capture_output=True, text=True, timeout=600)


def test_mup_keeps_activations_in_scale_where_sp_grows(tmp_path):
  out = _run('--widths=32,64,128', '--depths=1,4', '--steps=4', f'--out={tmp_path}',
             '--config.optim.lr=0.01', '--config.data.seq_len=32', '--config.data.batch_size=4')
  assert out.returncode == 0, out.stderr[-2000:]
  assert 'output_logits' in out.stdout
  table = json.loads((tmp_path / 'coordcheck.json').read_text())
  check = CoordCheck(table['rows'], table['steps'])
  assert (tmp_path / 'coordcheck_width.png').stat().st_size > 10_000
  assert (tmp_path / 'coordcheck_depth.png').stat().st_size > 10_000
  quantities = ['output_logits', 'last_block.attention_logits', 'last_block.attention_out',
                'last_block.mlp_out', 'last_block.block_out']
  for name in quantities:  # widths 32 -> 128 after 4 steps
    assert check.spread('mup', 'width', name) < 3.5, name
    assert check.spread('sp', 'width', name) > check.spread('mup', 'width', name), name
  assert check.growth('sp', 'width', 'output_logits') > 2.5
  assert check.growth('sp', 'width', 'last_block.block_out') > 5
  # depth 1 -> 4: the residual stream grows under SP, not under CompleteP's 1/L branches
  assert check.growth('sp', 'depth', 'last_block.block_out') > 3
  assert check.spread('mup', 'depth', 'last_block.block_out') < 2
  # step 0 is the initialisation: SP and μP differ there only by μP's init and multipliers
  assert check.values('sp', 'width', 'embedding', 0) == pytest.approx(
      check.values('mup', 'width', 'embedding', 0))


@pytest.mark.parametrize('args, message', [
    (['--widths=64,32'], '--widths=64,32: expected two or more increasing positive integers'),
    (['--depths=2'], '--depths=2: expected two or more increasing positive integers'),
    ([], '--widths or --depths: give at least one of them'),
    (['--widths=32,64', '--parametrizations=ntk'], '--parametrizations=ntk: expected sp, mup'),
    (['--widths=30,60'], 'width 30: config.model.n_heads=4 must divide it into an even '
                         'head_dim'),
])
def test_bad_flags_are_one_line(args, message, tmp_path):
  out = _run(*args, f'--out={tmp_path / "out"}')
  assert out.returncode == 2
  assert out.stderr.strip() == f'error: {message}' or out.stderr.startswith(f'error: {message}')
  assert len(out.stderr.strip().splitlines()) == 1
  assert not (tmp_path / 'out').exists()
