"""The coordinate check (μP, Yang et al. 2022, Fig. 5): activation sizes against width and depth
after a few AdamW steps, SP and μP side by side.

  python -m launch.coordcheck --config=experiments/configs/tiny.py --widths=32,64,128,256 \
      --depths=2,4,8 --out=runs/coordcheck

Prints one line per shape and a table of each activation's spread across sizes (largest over
smallest RMS after the last step); writes OUT/coordcheck.json and OUT/coordcheck_width.png (and
_depth.png). The learning rate is the config's (--config.optim.lr), constant. A bad flag or
config exits with status 2 and one line. The work is lmjax/train/coordcheck.py.
"""
from absl import flags
from ml_collections import config_flags

from lmjax.core.cli import config_value, run
from lmjax.train import coordcheck

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Path to a config file.',
                                          lock_config=False)
_WIDTHS = flags.DEFINE_string('widths', '', 'd_model values, increasing, e.g. 32,64,128,256 '
                              '(the first is μP\'s base width)')
_DEPTHS = flags.DEFINE_string('depths', '', 'n_layers values, increasing, e.g. 2,4,8 (the first '
                              'is the base depth)')
_STEPS = flags.DEFINE_integer('steps', 5, 'AdamW steps per shape')
_PARAMETRIZATIONS = flags.DEFINE_list('parametrizations', ['sp', 'mup'], 'sp, mup or both')
_OUT = flags.DEFINE_string('out', 'runs/coordcheck', 'Directory for the JSON table and figures')
flags.mark_flags_as_required(['config'])


def main():
  bad = sorted(set(_PARAMETRIZATIONS.value) - {'sp', 'mup'})
  if bad or not _PARAMETRIZATIONS.value:
    raise coordcheck.ConfigError(f'--parametrizations={",".join(_PARAMETRIZATIONS.value)}: '
                                 'expected sp, mup or sp,mup')
  check = coordcheck.coord_check(config_value(_CONFIG), _WIDTHS.value, _DEPTHS.value,
                                 _STEPS.value, tuple(_PARAMETRIZATIONS.value))
  print(coordcheck.table(check, tuple(_PARAMETRIZATIONS.value)))
  for path in coordcheck.write(check, _OUT.value, tuple(_PARAMETRIZATIONS.value)):
    print(f'wrote {path}')


if __name__ == '__main__':
  run(main)
