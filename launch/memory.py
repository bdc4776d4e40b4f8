"""Will it fit? Ahead-of-time compile of the train step for a mesh, without running a step.

  python -m launch.memory --config=experiments/configs/llama_1b.py --topology=v5p:2x2x2 --mesh=1,8,1
  python -m launch.memory --config=experiments/configs/llama_1b.py --mesh=1,8,1 --device_memory=80GB

With --topology (a TPU slice in libtpu's spelling: v5p:2x2x1, v5e:2x2, v6e:2x2, v4:2x2x1; needs
the `tpu` extra), libtpu describes the slice's devices and the TPU compiler itself compiles the
step for them, on this machine, with no TPU; --device_memory defaults to the chip's HBM.
Without it, the mesh's devices are simulated on the CPU and XLA:CPU stands in for the
accelerator's compiler, as for a GPU target.

Prints per device what `compiled.memory_analysis()` reports (arguments, outputs, temporaries)
beside an analytic estimate (lmjax/train/memory.py). The verdict compares arguments +
temporaries (outputs alias the donated state) with the device memory: exit 0 when they fit, 1
when not, 2 on a bad flag or config. Nothing is written. The work is lmjax/train/memory_plan.py.
"""
from absl import flags, logging
from ml_collections import config_flags

from lmjax.core.cli import config_value, run
from lmjax.core.errors import EXIT_FAILED, EXIT_OK
from lmjax.train.memory_plan import plan

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Path to a config file.',
                                          lock_config=False)
_MESH = flags.DEFINE_string('mesh', None, 'data,fsdp,tensor sizes, e.g. 1,8,1; with --topology '
                            'one may be -1 (the devices left over)')
_TOPOLOGY = flags.DEFINE_string('topology', None, 'A TPU slice to compile for, e.g. v5p:2x2x1 '
                                '(needs libtpu); unset: the mesh on simulated CPU devices')
_MEMORY = flags.DEFINE_string('device_memory', None, 'Memory per device, e.g. 80GB, 16GiB; '
                              'default: the chip\'s HBM with --topology, else 80GB')
flags.mark_flags_as_required(['config', 'mesh'])


def main():
  logging.set_verbosity(logging.ERROR)
  result = plan(config_value(_CONFIG), _MESH.value, _TOPOLOGY.value, _MEMORY.value,
                config_name=flags.FLAGS['config'].config_filename)
  print(result.text())
  return EXIT_OK if result.fits else EXIT_FAILED


if __name__ == '__main__':
  run(main)
