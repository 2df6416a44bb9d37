"""Reports: each module turns Comparison records (``to_dict()`` output) into one format."""
