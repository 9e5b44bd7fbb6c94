"""PubMed Central Open Access: mirror layouts, safe package reading, JATS parsing, figures to samples.

``layouts`` lists articles, ``archive`` streams packages, ``jats`` (with ``text``, ``panels`` and
``licenses``) reads the article, ``graphics`` finds each figure's image, ``source`` makes records, and
``figure_kind`` classifies figures for the ``figure_kind`` stage.
"""
