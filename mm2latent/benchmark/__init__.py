"""The benchmark: MM2Latent's text + mask evaluation on CelebA-Dialog / CelebAMask-HQ.

Pure pieces (mask merging, caption parsing, pair selection, CMMD, metrics, report) live in
their own modules; `run.py` composes them with the storage readers. Nothing here imports
Prefect or typer.
"""
