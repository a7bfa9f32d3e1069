"""The workflow's steps as plain functions of the package: train and register, the promotion
gate, evaluation. The CLI (``recommndr train``), ``dvc.yaml`` and, with the loop issue, the
Durable Functions activities call exactly these."""
