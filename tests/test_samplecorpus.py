"""The synthetic sample corpus: deterministic bytes, real formats, the documented bad inputs."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medcurate.samplecorpus import SAMPLE_PARAMS, write_sample_corpus
from medcurate.schemas.record import ACTIVE, QUARANTINED, to_batch
from medcurate.sources import make_source
from medcurate.sources.base import SourceContext
from medcurate.stages.base import StageContext, run_map_stage
from medcurate.stages.label_text import LabelTextStage

CTX = SourceContext(stat_cache=lambda uri, size, mtime: None, pseudonym_key="test-key")


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("corpus")
    return root, write_sample_corpus(root)


def records(name: str, root: Path) -> list[dict]:
    src = make_source("labeled", name, str(root), SAMPLE_PARAMS[name], CTX)
    out = [record for item in src.list_inputs() for record in src.read(item)]
    to_batch(out)
    return out


def test_layout_and_size(corpus):
    root, paths = corpus
    assert paths == {
        "labeled_chest": root / "labeled" / "chest_xray",
        "labeled_derm": root / "labeled" / "dermatology",
        "eval_derm_holdout": root / "eval" / "derm_holdout",
        "eval_vqa_test": root / "eval" / "vqa_test",
        "pmc": root / "pmc",
        "pmc_cloud": root / "pmc-cloud",
        "dicom": root / "dicom",
        "nifti": root / "nifti",
    }
    assert "synthetic" in (root / "README.txt").read_text().lower()
    everything = files(root)
    assert sum(map(len, everything.values())) < 4_000_000
    chest = [k for k in everything if k.startswith("labeled/chest_xray/patient")]
    derm = [k for k in everything if k.startswith("labeled/dermatology/")]
    assert len(chest) == 27 and len(derm) == 18  # 24 good + corrupt + bomb + duplicate; 3 x 5 + 3 copies


def test_deterministic_and_mtime_preserving(corpus, tmp_path):
    root, _ = corpus
    other = tmp_path / "other"
    write_sample_corpus(other)
    assert files(other) == files(root)
    paths = [p for p in other.rglob("*") if p.is_file()]
    for path in paths:
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    victim = other / "labeled/chest_xray/labels.csv"
    victim.write_text("tampered")
    os.utime(victim, ns=(1_000_000_000, 1_000_000_000))
    write_sample_corpus(other)
    changed = sorted(p.relative_to(other).as_posix() for p in paths if p.stat().st_mtime_ns != 1_000_000_000)
    assert changed == ["labeled/chest_xray/labels.csv"]
    assert files(other) == files(root)


def test_chest_formats_and_bad_items(corpus):
    _, paths = corpus
    chest = paths["labeled_chest"]
    modes: dict[str, int] = {}
    good = [p for p in sorted(chest.glob("patient*/*/*.*")) if int(p.parts[-3].removeprefix("patient")) <= 12]
    for path in good:
        with Image.open(path) as image:
            image.load()
            key = f"{image.format}/{image.mode}"
            modes[key] = modes.get(key, 0) + 1
            assert min(image.size) >= 256 and max(image.size) <= 512
            if image.mode == "I;16":
                assert np.asarray(image).max() > 255
    assert modes == {"PNG/L": 12, "PNG/I;16": 6, "JPEG/L": 6}
    with pytest.raises(OSError):  # truncated
        Image.open(chest / "patient00013/study1/view1_frontal.png").load()
    bomb = chest / "patient00015/study1/view1_frontal.png"
    assert bomb.stat().st_size < 200_000
    with pytest.raises(Image.DecompressionBombError):
        Image.open(bomb)
    assert not (chest / "patient00014").exists()
    duplicate = (chest / "patient00016/study1/view1_frontal.png").read_bytes()
    assert duplicate == (chest / "patient00001/study1/view1_frontal.png").read_bytes()


def test_chest_through_the_source(corpus):
    _, paths = corpus
    out = records("labeled_chest", paths["labeled_chest"])
    assert len(out) == 29
    bad = {r["status_reason"].split(":")[0] for r in out if r["status"] == QUARANTINED}
    assert bad == {"missing_file", "malformed_row"}
    assert sum(r["status"] == ACTIVE for r in out) == 27
    values = {label["value"] for r in out for label in r["medical"]["labels"]}
    assert values == {"positive", "negative", "uncertain"}
    active = [r for r in out if r["status"] == ACTIVE]
    assert len({r["sample_id"] for r in active}) == 27
    assert len({r["source"]["sha256"] for r in active}) == 26  # the exact duplicate
    pseudonyms = [r["subject"]["patient_pseudonym"] for r in active]
    assert all(p and "patient" not in p for p in pseudonyms)
    assert len(set(pseudonyms)) == 15  # patients 1-12, 13 (corrupt), 15 (bomb), 16 (duplicate)


def test_derm_formats_and_labels(corpus):
    _, paths = corpus
    out = records("labeled_derm", paths["labeled_derm"])
    assert [r["status"] for r in out] == [ACTIVE] * 18  # 3 x 5, and a planted copy in each class
    assert [r["medical"]["class_index"] for r in out] == [0] * 6 + [1] * 6 + [2] * 6
    kinds = []
    for record in out:
        with Image.open(io.BytesIO(record["image"]["bytes"])) as image:
            kinds.append((image.format, image.mode, image.getexif().get(0x0112)))
    assert kinds.count(("JPEG", "RGB", 6)) == 1
    assert kinds.count(("PNG", "P", None)) == 1
    assert kinds.count(("PNG", "RGBA", None)) == 1
    assert kinds.count(("JPEG", "RGB", None)) == 15
    result = run_map_stage(LabelTextStage({}), to_batch(out), StageContext(run_id="t"))
    texts = set(result.kept.column("text").field("label_text").to_pylist())
    assert texts == {
        "Dermoscopy image of skin showing melanoma.",
        "Dermoscopy image of skin showing nevus.",
        "Dermoscopy image of skin showing seborrheic keratosis.",
    }
