"""NegEx-style negation: which finding mentions a caption affirms, negates or hedges."""

from __future__ import annotations

import pytest

from medcurate.text.negation import contradictions, mentions

AFFIRMED, NEGATED, UNCERTAIN = (False, False), (True, False), (False, True)


@pytest.mark.parametrize(
    ("text", "term", "expected"),
    [
        ("No pleural effusion.", "pleural effusion", [NEGATED]),
        ("Small left pleural effusion.", "pleural effusion", [AFFIRMED]),
        ("Heart size is normal without cardiomegaly", "cardiomegaly", [NEGATED]),
        ("possible pneumonia", "pneumonia", [UNCERTAIN]),
        ("Pneumothorax has been ruled out", "pneumothorax", [NEGATED]),
        ("Bilateral pleural effusions.", "pleural effusion", [AFFIRMED]),
        ("Patchy opacities.", "Lung_Opacity", []),  # the whole name must appear
        ("Patchy opacities.", "opacity", [AFFIRMED]),  # y -> ies plural
        ("No focal consolidation, pleural effusion or pneumothorax.", "pneumothorax", [NEGATED]),
        ("No pneumothorax. Large pleural effusion.", "pleural effusion", [AFFIRMED]),
        ("No effusion but there is pneumonia.", "pneumonia", [AFFIRMED]),  # clause break
        ("No effusion, possible pneumonia.", "pneumonia", [UNCERTAIN]),  # the nearer cue governs
        ("No change in the left pleural effusion.", "pleural effusion", [AFFIRMED]),  # pseudo-negation
        ("Pneumonia cannot be excluded.", "pneumonia", [UNCERTAIN]),  # not the negation "excluded"
        ("Cannot exclude pneumonia", "pneumonia", [UNCERTAIN]),
        ("? pneumonia", "pneumonia", [UNCERTAIN]),
        ("Cardiomegaly is not seen.", "cardiomegaly", [NEGATED]),
        ("No evidence of edema. Edema is present.", "Edema", [NEGATED, AFFIRMED]),
        ("Enlarged cardiomediastinum.", "Enlarged_Cardiomediastinum", [AFFIRMED]),
        ("No Finding", "No_Finding", [AFFIRMED]),  # a cue inside the name is part of the name
        ("Pleural thickening.", "pleural effusion", []),
    ],
)
def test_mentions(text, term, expected):
    assert [(m.negated, m.uncertain) for m in mentions(text, term)] == expected


def test_mention_spans_point_at_the_term():
    (mention,) = mentions("Stable CARDIOMEGALY.", "cardiomegaly")
    assert "Stable CARDIOMEGALY."[mention.start : mention.end] == "CARDIOMEGALY"


def test_contradictions_name_the_label_and_skip_unmentioned_or_hedged_ones():
    labels = [
        {"name": "Pleural_Effusion", "value": "positive"},
        {"name": "Cardiomegaly", "value": "negative"},
        {"name": "Edema", "value": "negative"},  # not mentioned
        {"name": "Pneumonia", "value": "negative"},  # only hedged
        {"name": "Atelectasis", "value": "uncertain"},
    ]
    text = "No pleural effusion. Cardiomegaly. Possible pneumonia. No atelectasis."
    assert contradictions(text, labels) == [
        "negates positive label 'pleural effusion'",
        "names negative label 'cardiomegaly'",
    ]
    assert contradictions("Left pleural effusion; no pleural effusion on the right.", labels[:1]) == []
    assert contradictions("", labels) == []
