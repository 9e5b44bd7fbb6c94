"""NIfTI volumes as 2D slices plus structured findings from paired label masks.

``volume`` reads single axial slices lazily in RAS canonical order (a CT volume can be gigabytes,
and a corpus wants a handful of slices from each), ``masks`` measures each label of a segmentation
mask on the same grid, and ``findings`` turns those measurements into text through a versioned
template in ``prompts/findings``, as RadGPT does, so a caption records exactly which wording made it.
"""
