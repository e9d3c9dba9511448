"""MM2Latent inference: caption + spatial condition -> w -> image, and text-driven real-image edits.

Generation: w = MappingNet(FaRL text embedding of the caption, spatial embedding), where the
spatial embedding is the mask / sketch autoencoder's `encode` of the condition, or the 159-d
3DMM vector as it is; the image is StyleGAN2's synthesis of w broadcast to every layer.

Editing (the paper's latent editing): the real image is inverted by e4e to w+, then
w+' = w+ + beta * (Net(f_target, f_spatial) - Net(f_pivot, f_spatial)); f_spatial is the
embedding of the image's own mask / sketch / 3DMM code, computed by the preset's annotators
exactly as synth-data computes them (stored size, uint8 quantisation), unless given.
Real images must be FFHQ-aligned, as for e4e and the annotators' fixed crops.

The MappingNet and autoencoder come from a model registry written by `mm2latent train`; the
autoencoder is the version whose embeddings the MappingNet was trained on.

One job per module: `inputs` validates captions and conditions, `files` reads and writes
condition and image files through storage, `loading` builds the networks from the preset and
the model registry, `editor` runs generation and editing.
"""


from mm2latent.inference.editor import Mm2LatentGenerator
from mm2latent.batch_inputs import check_beta, check_images, check_texts
from mm2latent.inference.files import read_condition, read_image, write_png
from mm2latent.inference.inputs import Spatial, check_condition, check_modality
from mm2latent.inference.loading import load_inference, load_registered, load_released

__all__ = ["Mm2LatentGenerator", "Spatial", "check_beta", "check_condition", "check_images",
           "check_modality", "check_texts", "load_inference", "load_registered", "load_released",
           "read_condition", "read_image", "write_png"]
