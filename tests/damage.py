"""Checkpoint damage as bit rot or a torn upload leaves it: 8 bytes changed in every 64 KiB of
each data file of a checkpoint's `state/` that holds arrays (not the small index files), the
files keeping their sizes; mostly only values change (the files still parse), sometimes a
chunk's framing (tensorstore reports DATA_LOSS). Locally and on object storage (gcsfs)."""
import os

MIN_SIZE = 65536  # the arrays' data files, not the indexes


def _flip(data: bytes) -> bytes:
  """8 bytes changed in the middle of every 64 KiB (which arrays share a file varies from save
  to save: this reaches the params wherever they lie)."""
  data = bytearray(data)
  for start in range(MIN_SIZE // 2, len(data) - 8, MIN_SIZE):
    data[start:start + 8] = bytes(b ^ 0x5A for b in data[start:start + 8])
  return bytes(data)


def flip_bytes(state_dir) -> int:
  """Damages a local checkpoint's state/; returns how many files were changed."""
  changed = 0
  for root, _, files in os.walk(state_dir):
    for name in files:
      path = os.path.join(root, name)
      if os.path.basename(root) == 'd' and os.path.getsize(path) >= MIN_SIZE:
        with open(path, 'rb') as f:
          data = f.read()
        with open(path, 'wb') as f:
          f.write(_flip(data))
        changed += 1
  return changed


def flip_bytes_remote(fs, state_prefix) -> int:
  """The same on object storage: each object read, changed and uploaded again."""
  changed = 0
  for path, info in fs.find(state_prefix, detail=True).items():
    if path.rsplit('/', 2)[-2] == 'd' and int(info['size']) >= MIN_SIZE:
      fs.pipe_file(path, _flip(fs.cat_file(path)))
      changed += 1
  return changed
