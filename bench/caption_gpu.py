"""Benchmark: the caption stage (transformers backend) vs a bare batched model.generate loop, same inputs.

The model is a random-weight LLaVA (``medcurate.models.tiny.write_random_vlm``): preset "3b"
(Qwen2.5-3B's language model behind a CLIP ViT-L/14-336 tower, ~3.4B parameters, bfloat16) on a GPU,
"tiny" on a CPU. Building "3b" takes minutes and tens of GB of RAM: ``--model-dir`` keeps it for the next
run. Every answer is exactly ``--max-tokens`` long (``fixed_length``: min = max new tokens, greedy), so
both sides do the same work. The inputs are synthetic scan-like PNGs (grayscale and RGB, 256-1024 px
sides) with a short context (modality, body part, a present and an absent finding), rendered once through
the ``caption.free`` prompt (plain text, no JSON schema), so both sides send the same prompts with the
same images.

The baseline is what a careful engineer writes: for each batch, decode the PNGs with Pillow (the same
``max_pixels`` downscale as the backend), render the chat template, ``processor(...)`` with left padding,
``model.generate(max_new_tokens=N, min_new_tokens=N, do_sample=False)``, decode. medcurate runs the real
caption stage through ``run_map_stage`` over Arrow batches of records, with a fresh lake per run, so
every answer is a cache miss: it renders each prompt, hashes cache keys, generates batch by batch, writes
each batch of answers to the lake cache, and validates the records. The ratio is what that costs.

Each variant runs in its own fresh process (memory figures are its own; on a CPU one thread, one core),
loads the model once before timing (load time reported apart), warms up on one batch, then is timed.
Variants alternate over ``--repeat`` rounds and the fastest run of each is compared. Greedy decoding at a
fixed length must give the stage the baseline's text for each image: the run reports how many match (on
a CPU, all must).

Target: pipeline overhead (stage time / baseline time - 1) under 10%.

    python bench/caption_gpu.py [--preset 3b|tiny] [--images N] [--batch-size B] [--max-tokens 64]
                                [--repeat 2] [--model-dir DIR] [--no-warmup]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models load from local folders only; never ask a hub

import numpy as np
import torch
from harness import peak_rss_kib, print_markdown, spawn  # bench/harness.py

REPO = Path(__file__).resolve().parent.parent
TARGET_OVERHEAD = 0.10
MAX_PIXELS = 512 * 512  # handed to the backend as an option, and applied by the baseline the same way
ARROW_ROWS = 64  # records per Arrow batch: the engines' default batch_size (config.py)
SEED = 20240611
PROMPT = "caption.free"
#: The "tiny" language model at its default init (std 0.02) echoes the prompt's last token ("\n") forever:
#: its embedding dwarfs what 2 narrow layers add. The stage rightly rejects a blank caption (and retries
#: it), so nothing would be comparable. A larger std makes it babble; "3b" babbles as is (unused tokens).
#: Image sides in pixels (width, height); those above MAX_PIXELS get downscaled on both sides.
SIZES = ((256, 256), (512, 512), (640, 480), (768, 1024), (1024, 1024), (1024, 768))
#: (modality, body part, finding present, finding absent, PIL mode).
CONTEXTS = (
    ("x-ray", "chest", "consolidation", "pleural effusion", "L"),
    ("ct", "abdomen", "liver lesion", "ascites", "L"),
    ("mri", "brain", "acute infarct", "hemorrhage", "L"),
    ("dermoscopy", "skin", "pigmented lesion", "ulceration", "RGB"),
    ("histology", "colon", "adenocarcinoma", "necrosis", "RGB"),
)


def use_source_tree() -> None:
    """Import medcurate from this checkout when it is not installed (a GPU box the repo was copied to).

    pyproject maps ``medcurate.stages``/``.schemas``/``.prompts`` to top-level folders; putting the repo
    root on the package's search path reproduces that mapping without an install.
    """
    if importlib.util.find_spec("medcurate") is None:
        sys.path.insert(0, str(REPO))
    import medcurate

    if importlib.util.find_spec("medcurate.stages") is None:
        medcurate.__path__.append(str(REPO))


# -- inputs ------------------------------------------------------------------------------------------


def scan_png(index: int) -> tuple[bytes, int, int, str]:
    """A deterministic scan-like image (body outline, organs, noise) as PNG: (bytes, width, height, mode)."""
    from PIL import Image

    rng = np.random.default_rng(SEED + index)
    width, height = SIZES[index % len(SIZES)]
    mode = CONTEXTS[index % len(CONTEXTS)][4]
    yy, xx = np.mgrid[-1 : 1 : height * 1j, -1 : 1 : width * 1j]
    image = 0.45 * ((xx / 0.85) ** 2 + (yy / 0.95) ** 2 < 1)
    for _ in range(4):
        cx, cy, rx, ry = rng.uniform(-0.5, 0.5, 2).tolist() + rng.uniform(0.08, 0.35, 2).tolist()
        image += rng.uniform(-0.3, 0.4) * (((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1)
    gray = np.clip((image + rng.normal(0, 0.05, image.shape)) * 255, 0, 255).astype(np.uint8)
    pixels = gray if mode == "L" else np.stack([gray, (gray * 0.6).astype(np.uint8), 255 - gray // 2], -1)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue(), width, height, mode


def record_of(row: dict[str, Any]) -> dict[str, Any]:
    """The sample record a source would have produced for one input row."""
    from medcurate.schemas.record import new_record

    image = {k: row[k] for k in ("sha256", "width", "height", "mode")}
    labels = [{"name": row["positive"], "value": "positive"}, {"name": row["negative"], "value": "negative"}]
    return new_record(
        row["sample_id"],
        source={"kind": "labeled", "dataset": "bench"},
        image={"bytes": row["png"], "format": "png", **image},
        medical={"modality": row["modality"], "body_part": row["body_part"], "labels": labels},
    )


def write_inputs(path: Path, count: int) -> list[tuple[int, int]]:
    """The images and their contexts, with prompts rendered once, as one Arrow file both variants read."""
    import pyarrow as pa

    from medcurate.models.prompting import load_generation_prompt, record_variables

    prompt = load_generation_prompt(PROMPT)
    rows = []
    for i in range(count):
        png, width, height, mode = scan_png(i)
        modality, body_part, positive, negative, _ = CONTEXTS[i % len(CONTEXTS)]
        row = {"sample_id": f"scan-{i:05d}", "png": png, "sha256": hashlib.sha256(png).hexdigest()}
        row |= {"width": width, "height": height, "mode": mode, "modality": modality, "body_part": body_part}
        row |= {"positive": positive, "negative": negative}
        row["system"], row["user"] = prompt.render(record_variables(record_of(row)))
        rows.append(row)
    table = pa.Table.from_pylist(rows)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sorted({(r["width"], r["height"]) for r in rows})


def read_inputs(work: Path) -> list[dict[str, Any]]:
    """The rows ``write_inputs`` wrote, read before any timing: image bytes are in memory on both sides."""
    import pyarrow as pa

    with pa.memory_map(str(work / "inputs.arrow")) as source:
        return pa.ipc.open_file(source).read_all().to_pylist()


# -- variants ----------------------------------------------------------------------------------------


def _sync_and_reset(device: torch.device) -> None:
    """Wait for queued GPU work, then restart the peak-memory count, so the timed loop owns the peak."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _memory(device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        torch.cuda.synchronize()
    gpu = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    return {"rss_kib": peak_rss_kib(), "gpu_gib": gpu}


def run_baseline(work: Path, s: dict[str, Any]) -> dict[str, Any]:
    """The bare loop, batch by batch: Pillow decode + downscale, chat template, processor, generate."""
    import math

    import transformers
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    rows = read_inputs(work)
    device, dtype = torch.device(s["device"]), getattr(torch, s["dtype"])
    size, n = s["batch_size"], s["tokens"]
    start = time.perf_counter()
    processor = AutoProcessor.from_pretrained(s["model_dir"], local_files_only=True)
    processor.tokenizer.padding_side = "left"
    model = AutoModelForImageTextToText.from_pretrained(s["model_dir"], dtype=dtype, local_files_only=True)
    model.to(device).eval()
    load_s = time.perf_counter() - start

    def load_image(data: bytes) -> Image.Image:
        image = Image.open(io.BytesIO(data)).convert("RGB")
        scale = math.sqrt(MAX_PIXELS / (image.width * image.height))
        if scale >= 1:
            return image
        target = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
        return image.resize(target, Image.Resampling.BICUBIC)

    def chat(row: dict[str, Any]) -> str:
        messages = [
            {"role": "system", "content": [{"type": "text", "text": row["system"]}]},
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": row["user"]}]},
        ]
        return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def caption(batch: list[dict[str, Any]]) -> tuple[list[str], int, int]:
        images = [load_image(row["png"]) for row in batch]
        inputs = processor(images=images, text=[chat(r) for r in batch], padding=True, return_tensors="pt")
        inputs = inputs.to(device, dtype)
        output = model.generate(**inputs, max_new_tokens=n, min_new_tokens=n, do_sample=False)
        new = output[:, inputs["input_ids"].shape[1] :]
        texts = processor.batch_decode(new, skip_special_tokens=True)
        return texts, new.numel(), int(inputs["attention_mask"].sum())

    with torch.inference_mode():
        if s["warmup"]:
            caption(rows[:size])
        _sync_and_reset(device)
        start = time.perf_counter()
        texts: list[str] = []
        tokens = prompt_tokens = 0
        for i in range(0, len(rows), size):
            batch_texts, batch_tokens, batch_prompt = caption(rows[i : i + size])
            texts += batch_texts
            tokens += batch_tokens
            prompt_tokens += batch_prompt
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "load_s": load_s,
        "tokens": tokens,
        "prompt_tokens": prompt_tokens / len(rows),
        "texts": [t.strip() for t in texts],
        **_memory(device),
        "params": sum(p.numel() for p in model.parameters()),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
        "versions": f"torch {torch.__version__}, transformers {transformers.__version__}",
    }


def caption_stage(params: dict[str, Any]) -> tuple[Any, str]:
    """``make_stage("caption", ...)``, or its class directly where the registry cannot import (its other
    stages need the PMC/DICOM readers' packages, which a GPU box may lack): make_stage does nothing more."""
    try:
        from medcurate.stages import make_stage

        return make_stage("caption", params), "make_stage"
    except ImportError as exc:
        from medcurate.stages.caption import CaptionStage

        return CaptionStage(dict(params)), f"CaptionStage (registry not importable: {exc})"


def run_pipeline(work: Path, s: dict[str, Any]) -> dict[str, Any]:
    """The caption stage through run_map_stage over Arrow batches, every answer a miss in a fresh lake."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    import medcurate.models.transformers_backend  # noqa: F401 - importing torch/transformers is not load time
    from medcurate.models.registry import load_generator
    from medcurate.models.spec import resolve_model
    from medcurate.schemas.record import to_batch
    from medcurate.stages.base import StageContext, run_map_stage

    rows = read_inputs(work)
    records = [record_of(row) for row in rows]
    device, size = torch.device(s["device"]), s["batch_size"]
    options = {"device": s["device"], "dtype": s["dtype"], "batch_size": size, "max_pixels": MAX_PIXELS}
    start = time.perf_counter()
    spec = resolve_model("caption", s["model_dir"], "transformers", options=options)  # hashes the weights
    load_generator(spec)  # the one the stage will get: the registry keeps one per process and spec
    load_s = time.perf_counter() - start
    sampling = {"max_tokens": s["tokens"], "fixed_length": True}
    stage, made_by = caption_stage({"prompt": PROMPT, "sampling": sampling, "batch_size": size})
    stage.model = spec
    for record, row in zip(records, rows, strict=True):  # the baseline is sent exactly these prompts
        request = stage.request(record)
        assert (request.system, request.prompt) == (row["system"], row["user"]), row["sample_id"]
    batches = [to_batch(records[i : i + ARROW_ROWS]) for i in range(0, len(records), ARROW_ROWS)]
    lakes = Path(tempfile.mkdtemp(dir=work, prefix="lake-"))
    if s["warmup"]:
        run_map_stage(stage, to_batch(records[:size]), StageContext("warmup", str(lakes / "warmup")))
    _sync_and_reset(device)
    lake = lakes / "timed"
    ctx = StageContext("bench", str(lake))
    start = time.perf_counter()
    results = [run_map_stage(stage, batch, ctx) for batch in batches]
    seconds = time.perf_counter() - start
    memory = _memory(device)
    kept = pa.Table.from_batches([r.kept for r in results]).to_pylist()
    excluded = pa.Table.from_batches([r.excluded for r in results]).to_pylist()
    captions = {r["sample_id"]: r["text"]["generated_caption"] for r in kept}
    details = [json.loads(r["lineage"][-1]["details"]) for r in kept + excluded]  # kept or quarantined
    files = (lake / "state" / "model_cache").rglob("*.parquet")
    return {
        "seconds": seconds,
        "load_s": load_s,
        "tokens": sum(d["output_tokens"] for d in details),  # what the backend generated, retries included
        "attempts": sum(d["attempts"] for d in details),
        "cached": sum(d["cached"] for d in details),
        "cache_rows": sum(pq.read_metadata(f).num_rows for f in files),
        "texts": [captions.get(row["sample_id"]) for row in rows],
        "excluded": [r["status_reason"] for r in excluded][:5],
        "made_by": made_by,
        **memory,
    }


def child(args: argparse.Namespace) -> None:
    """Run one variant in this (fresh) process and print its result as one JSON line."""
    use_source_tree()
    work = Path(args.root)
    settings = json.loads(Path(args.cache).read_text())
    if settings["device"] == "cpu":
        # One core, as in the other benches. With a thread per core, a host that takes a core away for a
        # while stalls torch's thread barriers: measured here, the same run went from 2.5 s to 34 s.
        torch.set_num_threads(1)
    result = (run_baseline if args.variant == "baseline" else run_pipeline)(work, settings)
    print(json.dumps(result))


# -- driver ------------------------------------------------------------------------------------------


def ensure_model(model_dir: Path, preset: str) -> tuple[str, float | None]:
    """Build the model unless ``model_dir`` holds one: (what was built, build seconds or None)."""
    marker = model_dir / ".bench-preset"  # hidden: not part of the model's revision hash
    if (model_dir / "config.json").exists():
        return (marker.read_text() if marker.exists() else "?"), None
    from medcurate.models import tiny

    name = preset
    start = time.perf_counter()
    tiny.write_random_vlm(model_dir, name)
    marker.write_text(name)
    return name, time.perf_counter() - start


Runs = list[dict[str, Any]]


def run_rounds(work: Path, settings: Path, repeat: int) -> tuple[Runs, Runs]:
    """``repeat`` runs of each variant, alternating which goes first, each in its own process."""
    bases: Runs = []
    ours: Runs = []
    for round_ in range(repeat):
        order = ("baseline", "pipeline") if round_ % 2 == 0 else ("pipeline", "baseline")
        for variant in order:
            # harness.spawn passes --root and --cache: here the work folder and the settings file.
            (bases if variant == "baseline" else ours).append(spawn(__file__, variant, work, settings))
    return bases, ours


def measure(args: argparse.Namespace, work: Path) -> None:
    """Build or reuse the model, write the inputs, run the rounds, print the table and the verdict."""
    cuda = torch.cuda.is_available()
    model_dir = (args.model_dir or work / "model").resolve()
    preset, build_s = ensure_model(model_dir, args.preset)
    start = time.perf_counter()
    sizes = write_inputs(work / "inputs.arrow", args.images)
    inputs_s = time.perf_counter() - start
    settings = {
        "model_dir": str(model_dir),
        "device": "cuda" if cuda else "cpu",
        "dtype": "bfloat16" if cuda else "float32",  # what the backend's device/dtype "auto" picks
        "batch_size": args.batch_size,
        "tokens": args.max_tokens,
        "warmup": args.warmup,
    }
    (work / "settings.json").write_text(json.dumps(settings))
    bases, ours_runs = run_rounds(work, work / "settings.json", args.repeat)

    base = min(bases, key=lambda run: run["seconds"])
    ours = min(ours_runs, key=lambda run: run["seconds"])
    n, ratio = args.images, ours["seconds"] / base["seconds"]
    built = f"built in {build_s:.0f} s" if build_s is not None else f"reused from {model_dir}"
    params = f"{base['params'] / 1e9:.2f}B" if base["params"] >= 1e8 else f"{base['params'] / 1e6:.2f}M"
    sides = ", ".join(f"{w}x{h}" for w, h in sizes)
    print(
        f"\n{n} synthetic scans (PNG, sides {sides}; written in {inputs_s:.1f} s), batch {args.batch_size}, "
        f"exactly {args.max_tokens} output tokens each (greedy, fixed length)"
        f"\ndevice: {base['device_name']}, {settings['dtype']}; {base['versions']}"
        f"\nmodel: random LLaVA preset {preset!r}, {params} parameters ({built}); "
        f"mean prompt {base['prompt_tokens']:.0f} tokens (image tokens included)"
        f"\nstage built by {ours['made_by']}; each variant in its own process"
        f"{'' if cuda else ' (one thread)'}, model loaded once before "
        f"timing, {'one warm-up batch, ' if args.warmup else ''}fastest of {args.repeat} runs each\n"
    )
    gpu = ("peak GPU GiB",) if cuda else ()
    table = [("variant", "seconds", "images/s", "output tokens/s", *gpu, "peak RSS MiB", "load s", "ratio")]
    for name, run in (("baseline (processor + generate)", base), ("medcurate caption stage", ours)):
        seconds = run["seconds"]
        gpu = (f"{run['gpu_gib']:.2f}",) if cuda else ()
        rates = (f"{n / seconds:.2f}", f"{run['tokens'] / seconds:.1f}")
        rest = (f"{run['rss_kib'] / 1024:.0f}", f"{run['load_s']:.1f}", f"{seconds / base['seconds']:.3f}x")
        table.append((name, f"{seconds:.2f}", *rates, *gpu, *rest))
    print_markdown(table)

    pairs = ", ".join(f"{b['seconds']:.2f}/{o['seconds']:.2f}" for b, o in zip(bases, ours_runs, strict=True))
    texts = [(x["texts"], y["texts"]) for x in bases for y in ours_runs]
    matches = min(sum(a == b for a, b in zip(x, y, strict=True)) for x, y in texts)
    tokens_ok = all(run["tokens"] == n * args.max_tokens for run in [*bases, *ours_runs])
    misses = all(run["cached"] == 0 and run["attempts"] == n for run in ours_runs)
    written = min(run["cache_rows"] for run in ours_runs)
    cache_note = f"{'every' if misses else 'NOT every'} answer a cache miss computed once; {written} of {n} "
    cache_note += "written to the lake cache" + ("" if written == n else " (EXPECTED ALL)")
    excluded = f"; quarantined: {ours['excluded']}" if ours["excluded"] else ""
    print(
        f"\nevery run, baseline/stage seconds by round: {pairs}"
        f"\noutput tokens: {'all' if tokens_ok else 'NOT all'} runs generated {n} x {args.max_tokens}; "
        f"stage: {cache_note}{excluded}"
        f"\noutputs: {matches} of {n} stage captions equal the baseline's decoded text (worst pair of runs)"
    )
    verdict = "met" if ratio - 1 < TARGET_OVERHEAD else "MISSED"
    print(f"\ntarget: pipeline overhead < {TARGET_OVERHEAD:.0%}")
    print(f"result: stage/baseline {ratio:.3f}x, overhead {(ratio - 1) * 100:+.1f}% ({verdict})")
    if not cuda and (matches < n or not tokens_ok or not misses):
        sys.exit("on a CPU every caption must equal the baseline's and every answer be computed once")


def main() -> None:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=("tiny", "3b"), default="3b" if cuda else "tiny")
    parser.add_argument("--images", type=int, default=512 if cuda else 64)
    parser.add_argument("--batch-size", type=int, default=32 if cuda else 8)
    parser.add_argument("--max-tokens", type=int, default=64, help="fixed output length per image")
    parser.add_argument(
        "--repeat", type=int, default=2, help="runs of each variant; the fastest are compared"
    )
    parser.add_argument("--model-dir", type=Path, help="model folder to reuse, or to build into and keep")
    parser.add_argument(
        "--warmup", action=argparse.BooleanOptionalAction, default=True, help="one batch first"
    )
    parser.add_argument("--variant", choices=("baseline", "pipeline"), help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        child(args)
        return
    use_source_tree()
    with tempfile.TemporaryDirectory(prefix="caption-bench-") as tmp:
        measure(args, Path(tmp))


if __name__ == "__main__":
    main()
