"""End-to-end work on a log: the orchestration of fits, method selection, runs, the bench, the demo, teaching helpers."""
