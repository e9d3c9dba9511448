"""The paper's fixed widths, defined once; configs, datasets and checks import them from here."""

NUM_MASK_CLASSES = 19  # CelebAMask-HQ face-parsing classes, label ids 0..18
FLAME_DIM = 159        # DECA code kept per sample: shape 100 + expression 50 + pose 6 + camera 3
LATENT_DIM = 512       # width of StyleGAN2's z and w, of a FaRL embedding and of a spatial embedding
