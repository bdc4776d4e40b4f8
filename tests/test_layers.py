"""The architecture as a contract (.importlinter): import-linter checks it with the suite, so a
wrong import fails here instead of in a review."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# import-linter is in the test extras (pip install -e '.[test]'), beside this interpreter.
LINT = os.path.join(os.path.dirname(sys.executable), 'lint-imports')


def _lint(*args):
  return subprocess.run([LINT, '--no-cache', '--no-logo', *args], cwd=ROOT, capture_output=True,
                        text=True)


def test_the_rooms_the_jax_free_modules_the_launchers_and_the_cycles_keep_their_contracts():
  out = _lint()
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
  assert 'Contracts: 4 kept, 0 broken.' in out.stdout


def test_a_broken_contract_fails(tmp_path):
  # The same tree against a contract it breaks (training imports the model): the check fails
  # and names the import.
  config = tmp_path / 'contracts.ini'
  config.write_text('[importlinter]\nroot_packages =\n    lmjax\n\n'
                    '[importlinter:contract:wrong]\nname = train without model\ntype = forbidden\n'
                    'source_modules =\n    lmjax.train\nforbidden_modules =\n    lmjax.model\n')
  out = _lint('--config', str(config))
  assert out.returncode == 1 and 'Contracts: 0 kept, 1 broken.' in out.stdout, out.stdout
  assert 'lmjax.train is not allowed to import lmjax.model' in out.stdout
