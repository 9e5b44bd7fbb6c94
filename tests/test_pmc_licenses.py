"""License normalisation from PMC URLs, OA file-list codes and license prose."""

from __future__ import annotations

import pytest

from medcurate.sources.pmc.licenses import (
    LICENSE_IDS,
    allows_commercial_use,
    most_restrictive,
    normalize_license,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "http://creativecommons.org/licenses/by-nc/4.0/",
            ("cc-by-nc", "https://creativecommons.org/licenses/by-nc/4.0/"),
        ),
        (
            "https://creativecommons.org/licenses/by/4.0",
            ("cc-by", "https://creativecommons.org/licenses/by/4.0/"),
        ),
        (
            "https://creativecommons.org/publicdomain/zero/1.0/",
            ("cc0", "https://creativecommons.org/publicdomain/zero/1.0/"),
        ),
        (
            "http://creativecommons.org/licenses/by/3.0/igo/",
            ("cc-by", "https://creativecommons.org/licenses/by/3.0/igo/"),
        ),
        (
            "https://creativecommons.org/licenses/by-nc-nd/4.0/legalcode",
            ("cc-by-nc-nd", "https://creativecommons.org/licenses/by-nc-nd/4.0/"),
        ),
        (
            "http://creativecommons.org/licenses/by-sa/4.0/deed.en",
            ("cc-by-sa", "https://creativecommons.org/licenses/by-sa/4.0/"),
        ),
        (
            "HTTPS://CreativeCommons.org/licenses/by-nc-sa/3.0/",
            ("cc-by-nc-sa", "https://creativecommons.org/licenses/by-nc-sa/3.0/"),
        ),
        (
            "https://creativecommons.org/licenses/by-nd/2.0/uk/",
            ("cc-by-nd", "https://creativecommons.org/licenses/by-nd/2.0/uk/"),
        ),
        ("CC BY", ("cc-by", None)),
        ("CC BY-NC", ("cc-by-nc", None)),
        ("CC BY-NC-ND", ("cc-by-nc-nd", None)),
        ("CC BY-NC-SA", ("cc-by-nc-sa", None)),
        ("CC BY-SA", ("cc-by-sa", None)),
        ("CC BY-ND", ("cc-by-nd", None)),
        ("cc by-nc-nd", ("cc-by-nc-nd", None)),
        ("CC0", ("cc0", None)),
        ("NO-CC CODE", ("other", None)),
        ("CC-BY 4.0", ("cc-by", None)),
        (
            "This article is distributed under the terms of the Creative Commons Attribution License.",
            ("cc-by", None),
        ),
        ("Attribution-NonCommercial-NoDerivatives 4.0 International", ("cc-by-nc-nd", None)),
        (
            "Creative Commons Attribution-NonCommercial-ShareAlike 4.0 International License",
            ("cc-by-nc-sa", None),
        ),
        ("Creative Commons Attribution-NoDerivs 3.0 Unported", ("cc-by-nd", None)),
        ("This work is in the public domain in the USA.", ("pd", None)),
        ("CC0 1.0 Universal Public Domain Dedication", ("cc0", None)),
        ("Elsevier user license", ("other", None)),
        ("http://www.elsevier.com/open-access/userlicense/1.0/", ("other", None)),
        ("", (None, None)),
        ("   ", (None, None)),
        (None, (None, None)),
    ],
)
def test_normalize_license(value: str | None, expected: tuple[str | None, str | None]) -> None:
    assert normalize_license(value) == expected


def test_prose_with_an_embedded_url_takes_the_url() -> None:
    text = (
        "This is an Open Access article distributed under the terms of the Creative Commons Attribution "
        "Non-Commercial License (http://creativecommons.org/licenses/by-nc/2.0/uk/), which permits "
        "unrestricted non-commercial use."
    )
    assert normalize_license(text) == ("cc-by-nc", "https://creativecommons.org/licenses/by-nc/2.0/uk/")


def test_nc_nd_is_never_read_as_nc_or_nd() -> None:
    for value in (
        "CC BY-NC-ND",
        "by-nc-nd",
        "https://creativecommons.org/licenses/by-nc-nd/4.0/",
        "CC BY NC ND 4.0",
    ):
        assert normalize_license(value)[0] == "cc-by-nc-nd"
    assert normalize_license("https://creativecommons.org/licenses/by-nd-nc/1.0/")[0] == "cc-by-nc-nd"


def test_ids_are_idempotent() -> None:
    assert all(normalize_license(i) == (i, None) for i in LICENSE_IDS)


def test_most_restrictive() -> None:
    assert most_restrictive("cc-by", "cc-by-nc-nd", None, "cc0") == "cc-by-nc-nd"
    assert most_restrictive("cc-by-sa", "cc-by-nd") == "cc-by-nd"
    assert most_restrictive("cc0", "pd") == "pd"
    assert most_restrictive(None, "cc-by") == "cc-by"
    assert most_restrictive("something-new", "cc0") == "other"
    assert most_restrictive(None, None) is None
    assert most_restrictive() is None


def test_allows_commercial_use() -> None:
    allowed = [i for i in LICENSE_IDS if allows_commercial_use(i)]
    assert allowed == ["cc0", "pd", "cc-by", "cc-by-sa", "cc-by-nd"]
    assert not allows_commercial_use(None)
