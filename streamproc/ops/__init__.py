"""The operator's tools: ``status``/``lag`` and the progress output of long commands."""
