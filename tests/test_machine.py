"""lmjax.train.machine: the record of where a run ran, read from /proc/cpuinfo-style text."""
import json

import jax

from lmjax.train import machine

X86 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9B14
flags\t\t: fpu sse sse4_2 avx avx2 avx512f avx512bw

processor\t: 1
model name\t: something else
"""
ARM = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes sve
"""


def test_cpu_model_and_widest_vector_extension_from_cpuinfo(tmp_path):
  (tmp_path / 'x86').write_text(X86)
  (tmp_path / 'arm').write_text(ARM)
  assert machine.cpu_model(tmp_path / 'x86') == 'AMD EPYC 9B14'  # the first processor's
  assert machine.cpu_isa(tmp_path / 'x86') == 'avx512f'
  assert machine.cpu_isa(tmp_path / 'arm') == 'sve'
  assert machine.cpu_model(tmp_path / 'arm')  # no model name: platform's answer, not empty
  assert machine.cpu_isa(tmp_path / 'missing') is None


def test_describe_is_json_and_names_the_devices_and_libraries():
  d = json.loads(json.dumps(machine.describe()))
  assert d['platform'] == jax.devices()[0].platform and d['devices'] == jax.device_count()
  assert d['jax'] == jax.__version__ and d['jaxlib'] and d['python'].startswith('3.')
