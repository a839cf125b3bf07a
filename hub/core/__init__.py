"""The low-level pieces every layer uses: files, hashing, formats, safe loading, errors, config."""
