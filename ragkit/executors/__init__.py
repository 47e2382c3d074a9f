"""Executors: where a plan's units run (registry kind ``executor``; one module per executor)."""
