"""``medcurate serve``: a read-only local web page over one release, for auditors (decision 0013)."""
