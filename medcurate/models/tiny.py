"""Random-weight models built from configs alone, so tests and benchmarks never touch a model hub.

``write_tiny_vlm`` writes a LLaVA model (CLIP vision tower, Qwen2 language model, ChatML chat template)
small enough for a CPU test; ``write_random_vlm(..., preset="3b")`` writes the same architecture at
realistic sizes (Qwen2.5-3B's language model behind a CLIP ViT-L/14-336 tower, ~3.4B parameters) for GPU
throughput benchmarks, through the same code. LLaVA rather than Qwen2-VL because transformers cannot
build the Qwen2-VL processor without torchvision (its video processor needs it), and vLLM serves LLaVA
with any language model it knows. ``write_tiny_clip`` writes a CLIP for the embedding role.

Everything is deterministic: the tokenizer is trained on a fixed text, weights come from a seeded
generator, so the same seed gives byte-identical files and therefore the same ``model_revision``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    CLIPConfig,
    CLIPModel,
    CLIPProcessor,
    GenerationConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

IMAGE_TOKEN = "<image>"
VLM_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", IMAGE_TOKEN]
CLIP_SPECIALS = ["<|startoftext|>", "<|endoftext|>"]

#: ChatML with the image placeholder where the user put the image; content may be a string or parts.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or 'image' in part or 'image_url' in part %}<image>\n"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

#: Sizes per preset. "3b": the language model of Qwen2.5-VL-3B / Qwen2.5-3B and LLaVA-1.5's vision tower.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "vocab_size": 1024,
        "dtype": torch.float32,
        "text": {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 2048,
            # At the default 0.02 a model this small echoes the prompt's last token ("\n") forever;
            # a wider init gives varied text, so free-text smoke runs and benchmarks do real work.
            "initializer_range": 0.1,
        },
        "vision": {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 28,
            "patch_size": 7,
            "projection_dim": 32,
        },
    },
    "3b": {
        "vocab_size": 151936,
        "dtype": torch.bfloat16,
        "text": {
            "hidden_size": 2048,
            "intermediate_size": 11008,
            "num_hidden_layers": 36,
            "num_attention_heads": 16,
            "num_key_value_heads": 2,
            "max_position_embeddings": 32768,
            "rope_theta": 1000000.0,
            "rms_norm_eps": 1e-6,
        },
        "vision": {
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
            "image_size": 336,
            "patch_size": 14,
            "projection_dim": 768,
        },
    },
}

_WORDS = (
    "the a an of in on with and or no not is are was were shows showing seen there without within "
    "chest abdomen pelvis head neck brain spine knee hip shoulder hand foot lung lungs heart liver kidney "
    "spleen bowel colon bladder bone bones skull rib ribs vertebra vessel artery vein aorta tissue skin "
    "lesion mass nodule tumor cyst fracture effusion edema opacity consolidation atelectasis pneumothorax "
    "cardiomegaly fibrosis calcification hemorrhage infarct stenosis dilation thickening enhancement "
    "left right bilateral upper lower middle anterior posterior lateral medial proximal distal central "
    "small large mild moderate severe acute chronic normal abnormal stable new focal diffuse multiple "
    "single round irregular hyperdense hypodense hyperintense hypointense homogeneous heterogeneous "
    "radiograph x-ray ct mri ultrasound scan image images view axial coronal sagittal slice contrast "
    "frontal pa ap figure panel arrow arrows patient year old male female history pain fever cough "
    "finding findings impression caption score label modality organ region quality diagnosis report "
    "dermatology histology microscopy stain pathology specimen cells nuclei margin border pigmented "
    "melanoma nevus keratosis carcinoma benign malignant suspicious likely consistent compatible "
    "measuring cm mm size change compared prior study follow up recommend clinical correlation "
    "true false null yes none unknown other good poor fair excellent adequate limited"
)
_JSON_SNIPPETS = (
    '{"caption": "',
    '", "score": ',
    "}",
    '{"modality": "ct", "organ": "chest"}',
    '["a", "b"]',
    '{"label": "normal", "confidence": 0.9}',
    '{"ok": true, "reason": null}',
    ": ",
    ", ",
    '"',
)


def _training_text(lines: int = 400) -> list[str]:
    """Fixed medical-ish sentences and JSON fragments, so BPE learns words and JSON punctuation."""
    rng = random.Random(1234)
    words = _WORDS.split()
    text = []
    for i in range(lines):
        sentence = " ".join(rng.choice(words) for _ in range(rng.randint(4, 14)))
        number = str(rng.randint(0, 100)) if i % 3 else f"{rng.random():.2f}"
        text.append(f"{sentence.capitalize()}, {number}. {rng.choice(_JSON_SNIPPETS)}")
    return text


def build_tokenizer(
    vocab_size: int, specials: list[str], template: tuple[str, str] | None = None, **special_roles: str
) -> PreTrainedTokenizerFast:
    """A byte-level BPE of exactly ``vocab_size`` tokens (any text, JSON included, is encodable).

    The vocabulary is padded with unreachable ``<unusedN>`` entries so every id the model can emit
    decodes (a random model samples them all); ``template`` = (bos, eos) wraps each text in them.
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    target = min(vocab_size, 4096) - len(specials)
    trainer = trainers.BpeTrainer(
        vocab_size=target, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator(_training_text(), trainer)
    state = json.loads(tokenizer.to_str())
    vocab: dict[str, int] = state["model"]["vocab"]
    for i in range(vocab_size - len(specials) - len(vocab)):
        vocab[f"<unused{i}>"] = len(vocab)
    tokenizer = Tokenizer.from_str(json.dumps(state))
    tokenizer.add_special_tokens(specials)
    if template:
        bos, eos = template
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A {eos}", special_tokens=[(t, tokenizer.token_to_id(t)) for t in template]
        )
    assert tokenizer.get_vocab_size() == vocab_size, tokenizer.get_vocab_size()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **special_roles)


def _image_processor(size: int):
    """The PIL (slow) CLIP image processor where this transformers has one: it needs no torchvision."""
    import transformers

    cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    return cls(size={"shortest_edge": size}, crop_size={"height": size, "width": size})


def _legacy_preprocessor_config(directory: Path) -> None:
    """Also write ``preprocessor_config.json``: older transformers and vLLM look there, not in the
    nested ``processor_config.json`` that new transformers writes (which it still reads first)."""
    processor = json.loads((directory / "processor_config.json").read_text())
    config = {**processor["image_processor"], "processor_class": processor["processor_class"]}
    config["image_processor_type"] = "CLIPImageProcessor"  # the name every version maps to a backend
    (directory / "preprocessor_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _save_model(model: torch.nn.Module, directory: Path, dtype: torch.dtype) -> None:
    model.to(dtype).eval()
    model.save_pretrained(directory, safe_serialization=True)


def vlm_config(preset: str, tokenizer: PreTrainedTokenizerFast) -> LlavaConfig:
    """The LLaVA config of a preset, its special token ids taken from ``tokenizer``."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; presets are {', '.join(PRESETS)}")
    sizes = PRESETS[preset]
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in VLM_SPECIALS}
    vision = sizes["vision"]
    text = {
        "model_type": "qwen2",
        "vocab_size": sizes["vocab_size"],
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "tie_word_embeddings": True,
        **sizes["text"],
    }
    return LlavaConfig(
        vision_config={"model_type": "clip_vision_model", **vision},
        text_config=text,
        image_token_index=ids[IMAGE_TOKEN],
        image_seq_length=(vision["image_size"] // vision["patch_size"]) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        tie_word_embeddings=True,
        pad_token_id=ids["<|endoftext|>"],
    )


def vlm_tokenizer(preset: str) -> PreTrainedTokenizerFast:
    """The ChatML tokenizer of a preset: as many tokens as the model has embedding rows."""
    sizes = PRESETS[preset]
    return build_tokenizer(
        sizes["vocab_size"],
        VLM_SPECIALS,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=sizes["text"]["max_position_embeddings"],
    )


def write_random_vlm(directory: str | Path, preset: str = "tiny", seed: int = 0) -> Path:
    """A random-weight LLaVA (CLIP tower + Qwen2 LM) with tokenizer, processor and generation config.

    ``preset`` "tiny" is for CPU tests; "3b" (~3.4B parameters, ~7 GB in bfloat16, minutes and ~25 GB of
    RAM to build) is for GPU benchmarks. Both take the same path; only ``PRESETS`` differ.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; presets are {', '.join(PRESETS)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = vlm_tokenizer(preset)
    vision = PRESETS[preset]["vision"]
    processor = LlavaProcessor(
        image_processor=_image_processor(vision["image_size"]),
        tokenizer=tokenizer,
        patch_size=vision["patch_size"],
        vision_feature_select_strategy="default",
        chat_template=CHAT_TEMPLATE,
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=1,
    )
    processor.save_pretrained(directory)
    _legacy_preprocessor_config(directory)
    config = vlm_config(preset, tokenizer)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    text = config.text_config
    model.generation_config = GenerationConfig(
        bos_token_id=text.bos_token_id,
        eos_token_id=[text.eos_token_id, text.pad_token_id],
        pad_token_id=text.pad_token_id,
        do_sample=False,
    )
    _save_model(model, directory, PRESETS[preset]["dtype"])
    return directory


def write_tiny_vlm(directory: str | Path, seed: int = 0) -> Path:
    """The test-size vision-language model (~0.2M parameters, 28 px images, 16 image tokens)."""
    return write_random_vlm(directory, "tiny", seed)


def write_tiny_clip(directory: str | Path, seed: int = 0) -> Path:
    """A random-weight CLIP (32-dim, 28 px images) with its processor, for the embedding role."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(
        512,
        CLIP_SPECIALS,
        template=("<|startoftext|>", "<|endoftext|>"),
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_max_length=77,
    )
    CLIPProcessor(image_processor=_image_processor(28), tokenizer=tokenizer).save_pretrained(directory)
    _legacy_preprocessor_config(directory)
    common = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    config = CLIPConfig(
        text_config={
            **common,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": 77,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={**common, "image_size": 28, "patch_size": 7},
        projection_dim=32,
    )
    torch.manual_seed(seed)
    _save_model(CLIPModel(config), directory, torch.float32)
    return directory
