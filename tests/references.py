"""What transformers itself answers, in process: the yardstick for every task's handler.

:func:`reference` takes a job's inputs and its effective parameters (the
registry's defaults under the job's own) and computes the answer without any
pipeq code: through the task's pipeline where transformers 5 still has one,
and for summarization, translation and question answering (whose pipelines
were removed) through the Auto classes, written out here independently of
the handlers. Media inputs are decoded here with Pillow and soundfile.
"""

from __future__ import annotations

import base64
import functools
import io
from typing import Any

import numpy as np

from tests.reference_qa import answers

PIPELINE_TASKS = {
    "text-generation",
    "text-classification",
    "token-classification",
    "fill-mask",
    "image-classification",
    "object-detection",
    "image-segmentation",
    "automatic-speech-recognition",
    "audio-classification",
}
MODEL_RATE = 16_000


@functools.cache
def _pipeline(task: str, model_dir: str) -> Any:
    from transformers import pipeline

    return pipeline(task, model=model_dir, device="cpu")


@functools.cache
def _seq2seq(model_dir: str) -> tuple[Any, Any]:
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir), AutoModelForSeq2SeqLM.from_pretrained(
        model_dir
    )


def reference(task: str, model_dir: str, inputs: Any, params: dict[str, Any]) -> Any:
    """The answer transformers gives for ``inputs`` with ``params`` (pipeq's names)."""
    if task == "summarization":
        return _generate_text(model_dir, inputs, params, "summary_text")
    if task == "translation":
        return _generate_text(model_dir, inputs, params, "translation_text")
    if task == "question-answering":
        return answers(model_dir, inputs, params)
    batch = len(inputs) if isinstance(inputs, list) else 1
    items = _media(task, inputs)
    kwargs = PIPELINE_KWARGS[task](params)
    seed = params.get("seed")
    if seed is not None and kwargs.get("do_sample"):
        import torch

        torch.manual_seed(seed)
    output = _pipeline(task, model_dir)(items, batch_size=batch, **kwargs)
    if task == "image-segmentation":
        output = _masks(output)
    return output


# -- pipelines: pipeq's parameters as the pipeline's keyword arguments ------------------


def _sampling(params: dict[str, Any], *, model_samples: bool = False) -> dict[str, Any]:
    sample = params.get("do_sample", model_samples)
    if params.get("temperature") == 0 or params.get("num_beams", 1) > 1:
        sample = False
    kwargs: dict[str, Any] = {
        "max_new_tokens": params.get("max_new_tokens", 64),
        "do_sample": sample,
        "num_beams": params.get("num_beams", 1),
        "num_return_sequences": params.get("num_return_sequences", 1),
    }
    if "repetition_penalty" in params:
        kwargs["repetition_penalty"] = params["repetition_penalty"]
    if sample:
        kwargs.update({k: params[k] for k in ("temperature", "top_p", "top_k") if k in params})
    return kwargs


def _tokenizer_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    kwargs = {"truncation": params.get("truncation", True), "padding": params.get("padding", False)}
    if "max_length" in params:
        kwargs["max_length"] = params["max_length"]
    return kwargs


def _text_generation(params: dict[str, Any]) -> dict[str, Any]:
    return {**_sampling(params), "return_full_text": params.get("return_full_text", True)}


def _text_classification(params: dict[str, Any]) -> dict[str, Any]:
    kwargs = _tokenizer_kwargs(params)
    if params.get("function_to_apply", "default") != "default":
        kwargs["function_to_apply"] = params["function_to_apply"]
    if "top_k" in params:
        kwargs["top_k"] = params["top_k"]
    return kwargs


def _token_classification(params: dict[str, Any]) -> dict[str, Any]:
    keys = ("aggregation_strategy", "ignore_labels", "stride")
    return {"aggregation_strategy": "none", **{k: params[k] for k in keys if k in params}}


def _fill_mask(params: dict[str, Any]) -> dict[str, Any]:
    kwargs = {"tokenizer_kwargs": _tokenizer_kwargs(params), "top_k": params.get("top_k", 5)}
    if "targets" in params:
        kwargs["targets"] = params["targets"]
    return kwargs


def _image_classification(params: dict[str, Any]) -> dict[str, Any]:
    kwargs = {"top_k": params.get("top_k", 5)}
    if params.get("function_to_apply", "default") != "default":
        kwargs["function_to_apply"] = params["function_to_apply"]
    return kwargs


def _speech(params: dict[str, Any]) -> dict[str, Any]:
    keys = ("chunk_length_s", "stride_length_s")
    kwargs = {k: params[k] for k in keys if k in params}
    if params.get("return_timestamps", False) is not False:
        kwargs["return_timestamps"] = params["return_timestamps"]
    generation = {k: params[k] for k in ("max_new_tokens", "num_beams", "language") if k in params}
    if generation:
        kwargs["generate_kwargs"] = generation
    if "chunk_length_s" in params:
        kwargs["ignore_warning"] = True
    return kwargs


PIPELINE_KWARGS = {
    "text-generation": _text_generation,
    "text-classification": _text_classification,
    "token-classification": _token_classification,
    "fill-mask": _fill_mask,
    "image-classification": _image_classification,
    "object-detection": lambda p: {"threshold": p.get("threshold", 0.5)},
    "image-segmentation": lambda p: {
        "threshold": p.get("threshold", 0.9),
        "mask_threshold": p.get("mask_threshold", 0.5),
        "overlap_mask_area_threshold": p.get("overlap_mask_area_threshold", 0.5),
        **({"subtask": p["subtask"]} if "subtask" in p else {}),
    },
    "automatic-speech-recognition": _speech,
    "audio-classification": lambda p: {
        "top_k": p.get("top_k", 5),
        "function_to_apply": p.get("function_to_apply", "softmax"),
    },
}


# -- media -------------------------------------------------------------------------------


def _media(task: str, inputs: Any) -> Any:
    if task.startswith(("image", "object")):
        return _each(inputs, decode_image)
    if "audio" in task or "speech" in task:
        return _each(inputs, decode_audio)
    return inputs


def _each(inputs: Any, decode: Any) -> Any:
    return [decode(item) for item in inputs] if isinstance(inputs, list) else decode(inputs)


def decode_image(item: dict[str, str]) -> Any:
    from PIL import Image, ImageOps

    image = Image.open(io.BytesIO(base64.b64decode(item["base64"])))
    return ImageOps.exif_transpose(image).convert("RGB")


def decode_audio(item: dict[str, str]) -> Any:
    import soundfile

    samples, rate = soundfile.read(io.BytesIO(base64.b64decode(item["base64"])), dtype="float32")
    assert rate == MODEL_RATE, "references take audio at the model's rate"
    return samples if samples.ndim == 1 else samples.mean(axis=1, dtype=np.float32)


def _masks(output: Any) -> Any:
    """Segments with their mask as a 0/255 array, to compare with decoded PNGs."""
    if output and isinstance(output[0], dict):
        return [{**s, "mask": np.array(s["mask"])} for s in output]
    return [_masks(segments) for segments in output]


def mask_array(encoded: str) -> Any:
    from PIL import Image

    return np.array(Image.open(io.BytesIO(base64.b64decode(encoded))))


# -- summarization and translation: AutoModelForSeq2SeqLM.generate -----------------------


def _generate_text(model_dir: str, inputs: Any, params: dict[str, Any], key: str) -> Any:
    import torch

    tokenizer, model = _seq2seq(model_dir)
    texts = inputs if isinstance(inputs, list) else [inputs]
    extra: dict[str, Any] = {}
    if "tgt_lang" in params:
        tokenizer.src_lang = params["src_lang"]
        extra["forced_bos_token_id"] = tokenizer.convert_tokens_to_ids(params["tgt_lang"])
    encoded = tokenizer(
        texts,
        truncation=params.get("truncation", True),
        padding=params.get("padding") or True,
        max_length=params.get("max_length", model.config.max_position_embeddings),
        return_tensors="pt",
    )
    kwargs = _sampling(params)
    if params.get("seed") is not None and kwargs["do_sample"]:
        torch.manual_seed(params["seed"])
    with torch.inference_mode():
        ids = model.generate(**encoded, **kwargs, **extra)
    decoded = tokenizer.batch_decode(ids, skip_special_tokens=True)
    per_text = kwargs["num_return_sequences"]
    answers = [
        [{key: text} for text in decoded[i * per_text : (i + 1) * per_text]]
        for i in range(len(texts))
    ]
    if not isinstance(inputs, list):
        return answers[0]
    return [a[0] for a in answers] if per_text == 1 else answers


def close(got: Any, want: Any, *, tolerance: float = 1e-5) -> bool:
    """Equal, with floats within ``tolerance`` and masks compared pixel by pixel."""
    if isinstance(want, np.ndarray):
        return isinstance(got, str) and bool(np.array_equal(mask_array(got), want))
    if isinstance(got, dict) and isinstance(want, dict):
        return got.keys() == want.keys() and all(
            close(got[k], want[k], tolerance=tolerance) for k in got
        )
    if isinstance(got, list | tuple) and isinstance(want, list | tuple):
        return len(got) == len(want) and all(
            close(g, w, tolerance=tolerance) for g, w in zip(got, want, strict=True)
        )
    if isinstance(want, float | np.floating) and isinstance(got, float | int):
        return abs(got - float(want)) <= tolerance
    if isinstance(want, np.integer):
        return bool(got == int(want))
    return bool(got == want)
