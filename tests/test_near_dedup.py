"""Near-duplicate search equals brute force; the stage keeps exactly one copy by the keep policy."""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image, ImageDraw, ImageEnhance

from medcurate.dedup import components, groups, near_duplicate_cross_pairs, near_duplicate_pairs
from medcurate.schemas.record import new_record, set_score, to_batch
from medcurate.stages import make_stage
from medcurate.stages.base import StageContext, run_map_stage


def brute_force(hashes: np.ndarray, radius: int) -> np.ndarray:
    dist = np.bitwise_count(hashes[:, None] ^ hashes[None, :]).astype(np.int64)
    i, j = np.nonzero(np.triu(dist <= radius, 1))
    return np.column_stack([i, j, dist[i, j]])


def planted(n: int, radius: int, seed: int) -> np.ndarray:
    """Random hashes; a tenth are copies of others with 0..radius+1 flipped bits; a few clusters."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    copies = rng.choice(n, size=(n // 10, 2), replace=False)
    for dst, src in copies:
        flips = rng.choice(64, size=rng.integers(0, radius + 2), replace=False)
        hashes[dst] = hashes[src] ^ np.uint64(sum(1 << int(b) for b in flips))
    hashes[:5] = hashes[5]  # identical values must still list all their pairs
    return hashes


@pytest.mark.parametrize("radius", [0, 1, 3, 6, 8])
@pytest.mark.parametrize("flat_max", [10**6, 10])  # faiss flat path, banded path
def test_pairs_equal_brute_force(radius: int, flat_max: int) -> None:
    hashes = planted(1500, radius, seed=radius)
    expected = brute_force(hashes, radius)
    got = near_duplicate_pairs(hashes, radius, flat_max=flat_max)
    assert len(expected) > 50
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("bands", [4, 5, 9, 12])  # b = r + 1 (pigeonhole) up to the cost-chosen counts
def test_any_band_count_is_exact(bands: int) -> None:
    hashes = planted(800, 3, seed=bands)
    got = near_duplicate_pairs(hashes, 3, flat_max=0, bands=bands)
    np.testing.assert_array_equal(got, brute_force(hashes, 3))


def test_groups_and_components() -> None:
    labels = groups(6, np.array([[0, 1, 2], [1, 2, 5], [4, 5, 1]]))
    assert labels[0] == labels[1] == labels[2] and labels[4] == labels[5]
    assert len({labels[0], labels[3], labels[4]}) == 3
    far = 0xF0F0_F0F0_0000_0000  # 16 bits from the first three
    hashes = np.array([0, 0b1, 0b111, far, far, far | 0b11], dtype=np.uint64)
    assert components(hashes, 2).tolist() == [0, 0, 0, 1, 1, 1]


def base_image() -> Image.Image:
    image = Image.new("L", (256, 256), 30)
    draw = ImageDraw.Draw(image)
    draw.ellipse((40, 50, 180, 210), fill=200)
    draw.rectangle((150, 20, 240, 90), fill=120)
    draw.line((0, 255, 255, 100), fill=255, width=9)
    return image


def reencoded(image: Image.Image) -> Image.Image:
    buffer = BytesIO()
    ImageEnhance.Brightness(image).enhance(1.1).save(buffer, "JPEG", quality=60)
    return Image.open(BytesIO(buffer.getvalue()))


def test_stage_keeps_preferred_copy() -> None:
    base = base_image()
    unrelated = Image.new("L", (256, 256), 0)
    ImageDraw.Draw(unrelated).rectangle((0, 0, 127, 255), fill=255)
    images = {
        "a-base": (base, "cc-by-nc", 256),
        "b-small": (base.resize((180, 180), Image.LANCZOS), "cc-by", 180),
        "c-jpeg": (reencoded(base), "cc-by-nc-nd", 256),
        "d-other": (unrelated, "cc-by-nc", 256),
    }
    records = []
    for sample_id, (image, license_id, side) in images.items():
        record = normalized(sample_id, image)  # the real phash, fine phash and flipped views
        record["image"].update(source_width=side, source_height=side)
        record["source"]["license"] = license_id
        records.append(record)
    set_score(records[2], "judge.quality", 0.2, "m")  # a score would win, so give c the worst one...
    set_score(records[1], "judge.quality", 0.9, "m")  # ...and b the best: b wins on quality alone
    batch = to_batch(records)
    stage = make_stage("near_dedup", {})  # default radius 6
    state = stage.fit(fit_table(records, stage))
    result = run_map_stage(stage.bind(state), batch, StageContext(run_id="t"))
    kept = {r["sample_id"]: r for r in result.kept.to_pylist()}
    gone = {r["sample_id"]: r for r in result.excluded.to_pylist()}
    assert set(kept) == {"b-small", "d-other"} and set(gone) == {"a-base", "c-jpeg"}
    assert kept["b-small"]["dedup"]["near_group"] == "b-small" and not kept["d-other"]["dedup"]["near_group"]
    for record in gone.values():
        assert record["status_reason"].startswith("near_duplicate: ")
        assert record["dedup"]["duplicate_of"] == "b-small" and record["dedup"]["method"] == "phash"
        assert 0 <= record["dedup"]["distance"] <= 6

    # Without scores, license decides (cc-by beats cc-by-nc); with license off, resolution does.
    for keep, winner in ((["license"], "b-small"), (["resolution"], "a-base")):
        stage = make_stage("near_dedup", {"keep": keep})
        state = stage.fit(fit_table([{**r, "scores": []} for r in records], stage))
        assert {entry[0] for entry in state.values()} == {winner}


def fit_table(records: list[dict], stage) -> pa.Table:
    """What an engine's fit_table returns: sample_id plus the stage's dotted fit columns."""
    flat = pa.Table.from_batches([to_batch(records)]).flatten()
    return flat.select(["sample_id", *stage.fit_columns])


@pytest.mark.parametrize("brute_max", [0, 1 << 22])
@pytest.mark.parametrize("fewer_queries", [True, False])  # the smaller side is sorted in each pass
@pytest.mark.parametrize("dense_key_bits", [22, 0])  # key lookup by dense table, by binary search
def test_cross_pairs_equal_brute_force(
    brute_max: int, fewer_queries: bool, dense_key_bits: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("medcurate.dedup.hashes.DENSE_KEY_BITS", dense_key_bits)
    rng = np.random.default_rng(7)
    base = planted(3000, 6, seed=1)
    near = base[rng.choice(len(base), 200)] ^ np.uint64(0b101 << 9)
    queries = np.concatenate([near, planted(300, 6, seed=2), base[:3]])
    if not fewer_queries:
        queries, base = base, queries
    got = near_duplicate_cross_pairs(queries, base, 6, brute_max=brute_max)
    dist = np.bitwise_count(queries[:, None] ^ base[None, :]).astype(np.int64)
    q, b = np.nonzero(dist <= 6)
    assert got.tolist() == np.column_stack([q, b, dist[q, b]]).tolist()
    assert near_duplicate_cross_pairs(queries[:0], base, 6).shape == (0, 3)


def normalized(sample_id: str, image: Image.Image) -> dict:
    """A record whose image went through the real normalize stage (phash and its flipped view)."""
    buffer = BytesIO()
    image.save(buffer, "PNG")
    record = new_record(sample_id, image={"bytes": buffer.getvalue()}, source={"license": "cc-by"})
    return run_map_stage(
        make_stage("normalize", {}), to_batch([record]), StageContext(run_id="t")
    ).kept.to_pylist()[0]


def test_flipped_copy_is_found_only_when_the_view_is_configured() -> None:
    base = base_image()
    records = [
        normalized("a-orig", base),
        normalized("b-flip", base.transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((200, 200))),
    ]
    assert [v["transform"] for v in records[0]["image"]["phash_variants"]] == ["hflip"]
    plain = make_stage("near_dedup", {})
    assert plain.fit(fit_table(records, plain)) == {}  # a mirror image is far in phash space
    flips = make_stage("near_dedup", {"variants": ["hflip"], "keep": ["resolution"]})
    state = flips.fit(fit_table(records, flips))
    result = run_map_stage(flips.bind(state), to_batch(records), StageContext(run_id="t"))
    assert [r["sample_id"] for r in result.kept.to_pylist()] == ["a-orig"]
    gone = result.excluded.to_pylist()[0]
    assert gone["dedup"]["duplicate_of"] == "a-orig" and gone["dedup"]["method"] == "phash:hflip"
    assert gone["dedup"]["distance"] <= 6

    rotations = make_stage("near_dedup", {"variants": ["rot90"]})
    with pytest.raises(ValueError, match="hash_variants"):
        rotations.fit(fit_table(records, rotations))


def test_exact_dedup_keeps_by_the_shared_policy() -> None:
    """The same figure in two articles: the older article's copy stays unless license decides first."""
    records = [
        new_record(
            sample_id,
            image={"pixel_sha256": "same", "source_width": 100, "source_height": 100},
            source={"license": license_id},
            article={"pmcid": sample_id, "year": year},
        )
        for sample_id, license_id, year in (("a-new", "cc0", 2021), ("b-old", "cc-by", 2015))
    ] + [new_record("c-alone", image={"pixel_sha256": "other"}, source={})]
    for keep, winner in ((["oldest"], "b-old"), (["license", "oldest"], "a-new")):
        stage = make_stage("exact_dedup", {"keep": keep})
        state = stage.fit(fit_table(records, stage))
        assert state == {"same": winner}
        result = run_map_stage(stage.bind(state), to_batch(records), StageContext(run_id="t"))
        assert sorted(r["sample_id"] for r in result.kept.to_pylist()) == sorted([winner, "c-alone"])
        (gone,) = result.excluded.to_pylist()
        assert gone["status_reason"] == f"exact_duplicate: same pixels as {winner}"
        assert gone["dedup"] == {**gone["dedup"], "duplicate_of": winner, "method": "exact_pixels"}
    with pytest.raises(ValueError, match="unknown keep criteria"):
        make_stage("exact_dedup", {"keep": ["newest"]}).fit(fit_table(records, stage))


def test_slices_of_one_series_are_not_duplicates_of_each_other() -> None:
    """Neighbouring slices look alike by design; the same slice in another series is a duplicate."""
    base = base_image()
    records = [normalized(sid, base) for sid in ("a-s1", "b-s1", "c-s2")]
    for record, series in zip(records, ("s1", "s1", "s2"), strict=True):
        record["scan"] = {"series_pseudonym": series}
    stage = make_stage("near_dedup", {"keep": ["sample_id"]})
    state = stage.fit(fit_table(records, stage))
    assert {sid: entry[0] for sid, entry in state.items()} == {"a-s1": "a-s1", "c-s2": "a-s1"}
    everything = make_stage("near_dedup", {"ignore_within": []})
    assert len(everything.fit(fit_table(records, everything))) == 3


def test_records_without_the_fine_hash_are_refused_by_name() -> None:
    """Records from before normalize v2 cannot be confirmed: the error names the record and the fix."""
    records = [normalized(sid, base_image()) for sid in ("a", "b")]
    records[1]["image"]["phash_fine"] = None
    stage = make_stage("near_dedup", {})
    with pytest.raises(ValueError, match="b has no phash_fine; re-run normalize"):
        stage.fit(fit_table(records, stage))
