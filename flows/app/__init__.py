"""`mm2latent app`: a small FastAPI server and one plain page (see README, "Interactive editor")."""
