"""Evaluation: metrics, DAVIS conventions, benchmark-split inference and scoring."""
