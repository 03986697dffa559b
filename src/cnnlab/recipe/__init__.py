"""Training policy: how a model is fed and trained, independent of any architecture.

recipe: the Recipe dataclass (loss, optimizer, learning rate and schedule, batch, epochs, input
size and fit, pixel scale, augmentation, weight averaging, test-time flips, precision);
augment, schedule, losses: the pieces a Recipe names; pixels: photos to model inputs.
Both cnnlab.models (a registered model's published recipe) and cnnlab.training (which honours
it) import this package; it imports neither.
"""

from cnnlab.recipe.recipe import FAMILIES, HEAD_FITS, LOSSES, OPTIMIZERS, PIXEL_SCALES, PRECISIONS, SCHEDULES, Recipe

__all__ = ["FAMILIES", "HEAD_FITS", "LOSSES", "OPTIMIZERS", "PIXEL_SCALES", "PRECISIONS", "SCHEDULES", "Recipe"]
