"""transformers backend: generation and embedding in this process, on a CPU or one GPU.

For tests (tiny random-weight models, see ``tiny.py``), laptops and small runs; fleets use vLLM. Models load
from a local folder only. Decoding depends on ``Sampling`` alone (the model's own generation defaults,
such as a repetition penalty, are not applied), so a cache key names everything that shaped an answer.
Sampling draws from a ``torch.Generator`` seeded per call: the same batch gives the same text. A request's
JSON schema is enforced token by token with lm-format-enforcer.
"""

from __future__ import annotations

import io
import math
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import (
    AutoModel,
    AutoModelForImageTextToText,
    AutoProcessor,
    GenerationConfig,
    LogitsProcessor,
)

from medcurate.models.base import Embedder, Generation, GenerationRequest, Generator, OutOfMemory, Sampling
from medcurate.models.spec import ModelSpec

DEFAULT_MAX_PIXELS = 512 * 512


def _device_and_dtype(options: Mapping[str, Any]) -> tuple[torch.device, torch.dtype]:
    """``auto`` means the GPU in bfloat16 when there is one, else the CPU in float32."""
    device = str(options.get("device", "auto"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = str(options.get("dtype", "auto"))
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    resolved = getattr(torch, dtype, None)
    if not isinstance(resolved, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}; use auto, float32, float16 or bfloat16")
    return torch.device(device), resolved


def load_local(owner: Any, spec: ModelSpec, auto_class: Any, default_batch: int) -> None:
    """Set ``owner``'s device, dtype, batch size, pixel cap, processor and model from ``spec``'s folder."""
    options = spec.options
    owner.spec = spec
    owner.device, owner.dtype = _device_and_dtype(options)
    owner.batch_size = int(options.get("batch_size", default_batch))
    owner.max_pixels = int(options.get("max_pixels", DEFAULT_MAX_PIXELS))
    os.environ["HF_HUB_OFFLINE"] = "1"  # belt and braces: local_files_only already forbids the hub
    kwargs: dict[str, Any] = {"local_files_only": True, "dtype": owner.dtype}
    if options.get("attn_implementation"):
        kwargs["attn_implementation"] = options["attn_implementation"]
    owner.processor = AutoProcessor.from_pretrained(spec.path, local_files_only=True)
    owner.model = auto_class.from_pretrained(spec.path, **kwargs)
    owner.model.to(owner.device).eval()


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """RGB image, downscaled (aspect kept) to at most ``max_pixels`` so a huge scan cannot exhaust memory
    in the processor; the processor resizes further to what the model takes."""
    image = Image.open(io.BytesIO(data))
    scale = math.sqrt(max_pixels / (image.width * image.height))
    if scale < 1:
        size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
        image.draft("RGB", size)  # JPEG: decode at a reduced scale, much cheaper than resizing afterwards
        image = image.convert("RGB")
        if image.width * image.height > max_pixels:
            image = image.resize(size, Image.Resampling.BICUBIC)
        return image
    return image.convert("RGB")


def _to_device(batch: Mapping[str, Any], device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """Move tensors; floating ones (pixel values) also take the model's dtype."""
    moved = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device, dtype) if value.is_floating_point() else value.to(device)
        moved[key] = value
    return moved


def _enforceable(schema: Any) -> Any:
    """The schema with each bounded integer (at most 1001 values) given as an enum of its values:
    lm-format-enforcer ignores ``minimum`` and ``maximum``, so such a number could otherwise run forever."""
    if isinstance(schema, list):
        return [_enforceable(value) for value in schema]
    if not isinstance(schema, Mapping):
        return schema
    out = {key: _enforceable(value) for key, value in schema.items()}
    low, high = out.get("minimum"), out.get("maximum")
    bounded = isinstance(low, int) and isinstance(high, int) and 0 <= high - low <= 1000
    if bounded and out.get("type") == "integer" and "enum" not in out:
        out["enum"] = list(range(low, high + 1))
    return out


def _count_leading_spaces() -> None:
    """Make lm-format-enforcer (0.11) count whitespace that opens a quoted string.

    It skips whitespace while a string is still empty, as if before the opening quote, yet its token
    lists count it: ``maxLength`` is overrun by one, ``" a"`` passes an enum of ``"a"``, and a space
    plus the closing quote of a ``minLength`` string is offered, then refused, which ends the output
    mid-JSON. Idempotent; characters inside a string take no other path.
    """
    from lmformatenforcer import jsonschemaparser as jsp

    original = jsp.StringParsingState.add_character
    if getattr(original, "counts_leading_spaces", False):
        return

    def add_character(self, new_character: str):
        inside = self.require_opening_quote and self.seen_opening_quote and not self.seen_closing_quote
        if inside and not self.parsed_string and new_character in jsp.WHITESPACE_CHARACTERS:
            new = jsp.PrimitiveParsingState.add_character(self, new_character)
            if new.regex_parser:
                new.regex_parser = new.regex_parser.add_character(new_character)
            return new
        return original(self, new_character)

    add_character.counts_leading_spaces = True
    jsp.StringParsingState.add_character = add_character


class _SchemaMask(LogitsProcessor):
    """Per-row JSON-schema constraint; rows without an enforcer are left free (mixed batches)."""

    def __init__(self, enforcers: Mapping[int, Any]):
        self.enforcers = enforcers

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for row, enforcer in self.enforcers.items():
            allowed = enforcer.get_allowed_tokens(input_ids[row].tolist()).allowed_tokens
            keep = torch.zeros(scores.shape[1], dtype=torch.bool, device=scores.device)
            keep[torch.tensor(allowed, dtype=torch.long, device=scores.device)] = True
            scores[row] = scores[row].masked_fill(~keep, float("-inf"))
        return scores


class _SeededSampler(LogitsProcessor):
    """Temperature + top-p sampling from a seeded generator, handed to greedy decoding as a one-hot.

    ``generate`` samples from the global RNG; drawing here instead makes results depend on the seed
    only, and leaves other users of the global RNG alone. It runs last, after the schema mask.
    """

    def __init__(self, temperature: float, top_p: float, generator: torch.Generator):
        self.temperature, self.top_p, self.generator = temperature, top_p, generator

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        logits = scores.float() / self.temperature
        if self.top_p < 1.0:
            ordered, order = torch.sort(logits, descending=True, dim=-1)
            cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
            drop = cumulative - ordered.softmax(dim=-1) >= self.top_p  # keeps at least the best token
            logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
        probs = logits.softmax(dim=-1).nan_to_num(0.0)
        dead = probs.sum(dim=-1) <= 0  # a row with nothing allowed: leave it to greedy
        probs[dead] = 1.0
        choice = torch.multinomial(probs, 1, generator=self.generator)
        out = torch.full_like(scores, float("-inf")).scatter_(1, choice, 0.0)
        return torch.where(dead.unsqueeze(1), scores, out)


class TransformersGenerator(Generator):
    """A vision-language (or any image-text-to-text) model run by ``transformers.generate``.

    Options: ``device`` (auto), ``dtype`` (auto), ``batch_size`` (8), ``max_pixels`` (512*512, images are
    downscaled to this before the processor), ``attn_implementation`` (transformers' default).
    """

    backend = "transformers"

    def __init__(self, spec: ModelSpec):
        load_local(self, spec, AutoModelForImageTextToText, default_batch=8)
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.tokenizer.padding_side = "left"  # decoder-only batches: every prompt ends where output starts
        defaults = self.model.generation_config
        eos = defaults.eos_token_id if defaults.eos_token_id is not None else self.tokenizer.eos_token_id
        self.eos_ids = [eos] if isinstance(eos, int) else list(eos)
        pad = defaults.pad_token_id if defaults.pad_token_id is not None else self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.eos_ids[0]
        # generate() fills whatever a call leaves unset from the model's defaults (a shipped repetition
        # penalty, say); keep only the special tokens so that Sampling alone decides the decoding.
        self.model.generation_config = GenerationConfig(
            bos_token_id=defaults.bos_token_id, eos_token_id=self.eos_ids, pad_token_id=self.pad_id
        )
        self._enforcer_data: Any = None
        self._lock = threading.Lock()

    def _tokenizer_data(self) -> Any:
        """lm-format-enforcer's view of the vocabulary, built once (its transformers integration does not
        import under transformers 5, so this repeats its few lines, batched).

        Only tokens that decode to printable text (spaces allowed) take part. A lone UTF-8 byte decodes to
        nothing, so a string made of them never reaches its ``maxLength`` (a random model repeats one
        forever); control characters and newlines would make the JSON invalid inside a string. JSON
        whitespace is therefore spaces only, and at most one in a row (see ``_enforcer``).
        """
        if self._enforcer_data is None:
            from lmformatenforcer import TokenEnforcerTokenizerData

            tok = self.tokenizer
            special = {i for i, t in tok.added_tokens_decoder.items() if t.special} | set(tok.all_special_ids)
            ids = [i for i in range(len(tok)) if i not in special]
            zero = tok.encode("0", add_special_tokens=False)[-1]
            alone = tok.batch_decode([[i] for i in ids])
            # Decoding after "0" keeps the leading space a word-start token carries.
            after_zero = [text[1:] for text in tok.batch_decode([[zero, i] for i in ids])]
            regular = [
                (i, a, len(a) > len(b))
                for i, a, b in zip(ids, after_zero, alone, strict=True)
                if a and "\ufffd" not in a and all(c == " " or c.isprintable() for c in a)
            ]

            def decode(tokens: list[int]) -> str:
                return tok.decode(tokens).rstrip("\ufffd")

            self._enforcer_data = TokenEnforcerTokenizerData(regular, decode, self.eos_ids, False, len(tok))
        return self._enforcer_data

    def _enforcer(self, schema: Mapping[str, Any]) -> Any:
        from lmformatenforcer import JsonSchemaParser, TokenEnforcer

        _count_leading_spaces()
        enforcer = TokenEnforcer(self._tokenizer_data(), JsonSchemaParser(_enforceable(schema)))
        # One space in a row is all a compact answer needs (a random model would pad with them forever).
        enforcer.root_parser.config.max_consecutive_whitespaces = 1
        return enforcer

    def _prompt(self, request: GenerationRequest) -> str:
        content: list[dict[str, Any]] = [{"type": "image"}] if request.image is not None else []
        content.append({"type": "text", "text": request.prompt})
        messages = [{"role": "user", "content": content}]
        if request.system:
            messages.insert(0, {"role": "system", "content": [{"type": "text", "text": request.system}]})
        return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def generate(self, requests: Sequence[GenerationRequest], sampling: Sampling) -> list[Generation]:
        if not requests:
            return []
        try:
            with self._lock, torch.inference_mode():
                return self._generate(requests, sampling)
        except torch.OutOfMemoryError as exc:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise OutOfMemory(f"{self.spec.ref}: out of memory on a batch of {len(requests)}") from exc

    def _generate(self, requests: Sequence[GenerationRequest], sampling: Sampling) -> list[Generation]:
        images = [decode_image(r.image, self.max_pixels) for r in requests if r.image is not None]
        texts = [self._prompt(r) for r in requests]
        batch = self.processor(text=texts, images=images or None, padding=True, return_tensors="pt")
        inputs = _to_device(batch, self.device, self.dtype)
        config = GenerationConfig(
            max_new_tokens=sampling.max_tokens,
            min_new_tokens=sampling.max_tokens if sampling.fixed_length else None,
            do_sample=False,
            eos_token_id=self.eos_ids,
            pad_token_id=self.pad_id,
        )
        processors: list[LogitsProcessor] = []
        # fixed_length forbids ending, which a finished JSON value needs: benchmarks go unconstrained.
        if not sampling.fixed_length and any(r.schema is not None for r in requests):
            enforcers = {
                row: self._enforcer(r.schema) for row, r in enumerate(requests) if r.schema is not None
            }
            processors.append(_SchemaMask(enforcers))
        if sampling.temperature > 0:
            generator = torch.Generator(device=self.device).manual_seed(sampling.seed)
            processors.append(_SeededSampler(sampling.temperature, sampling.top_p, generator))
        output = self.model.generate(**inputs, generation_config=config, logits_processor=processors)
        prompt_len = inputs["input_ids"].shape[1]
        prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        results = []
        for row, tokens in enumerate(output[:, prompt_len:].tolist()):
            end = next((i for i, t in enumerate(tokens) if t in self.eos_ids), None)
            kept = tokens if end is None else tokens[: end + 1]
            if sampling.fixed_length:
                kept = tokens[: sampling.max_tokens]
            stopped = end is not None and not sampling.fixed_length
            results.append(
                Generation(
                    text=self.tokenizer.decode(kept, skip_special_tokens=True),
                    prompt_tokens=int(prompt_tokens[row]),
                    output_tokens=len(kept),
                    finish_reason="stop" if stopped else "length",
                )
            )
        return results

    def close(self) -> None:
        self.model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _features(output: Any) -> torch.Tensor:
    """transformers 5 returns a ModelOutput from ``get_*_features`` (projection in ``pooler_output``),
    older versions the tensor itself."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class TransformersEmbedder(Embedder):
    """A CLIP-style dual encoder (CLIPModel, SiglipModel, ...); options device, dtype, batch_size (32)."""

    backend = "transformers"

    def __init__(self, spec: ModelSpec):
        load_local(self, spec, AutoModel, default_batch=32)
        config = self.model.config
        self.dim = int(getattr(config, "projection_dim", None) or config.text_config.hidden_size)
        # SigLIP was trained on texts padded to a fixed length; CLIP pools at the end token either way.
        self._text_padding = "max_length" if "siglip" in config.model_type else True

    def _rows(self, items: Sequence[Any], encode) -> np.ndarray:
        rows = [np.zeros((0, self.dim), dtype=np.float32)]
        with torch.inference_mode():
            for start in range(0, len(items), self.batch_size):
                features = _features(encode(items[start : start + self.batch_size])).float()
                features = features / features.norm(dim=-1, keepdim=True).clamp_min(1e-12)
                rows.append(features.cpu().numpy().astype(np.float32))
        return np.concatenate(rows)

    def embed_images(self, images: Sequence[bytes]) -> np.ndarray:
        def encode(chunk: Sequence[bytes]) -> Any:
            pictures = [decode_image(data, self.max_pixels) for data in chunk]
            batch = _to_device(self.processor(images=pictures, return_tensors="pt"), self.device, self.dtype)
            return self.model.get_image_features(pixel_values=batch["pixel_values"])

        return self._rows(images, encode)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        def encode(chunk: Sequence[str]) -> Any:
            batch = self.processor(
                text=list(chunk), padding=self._text_padding, truncation=True, return_tensors="pt"
            )
            batch = _to_device(batch, self.device, self.dtype)
            return self.model.get_text_features(
                **{k: v for k, v in batch.items() if k in ("input_ids", "attention_mask")}
            )

        return self._rows(texts, encode)

    def close(self) -> None:
        self.model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
