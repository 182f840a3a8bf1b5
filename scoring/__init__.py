"""scoring: what runs on a Batch node — style models and the decode→model→encode chunk task.

No Azure imports here. Run ``python -m scoring --help``.
"""
