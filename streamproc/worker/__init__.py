"""The Faust worker: folds the raw log into per-recording state and fetches finished files."""
