"""Evaluation: metrics with bootstrap intervals, gold audits and verdicts, ranking comparison, the RQ3 check."""
