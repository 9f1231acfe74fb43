"""databrittle: data brittleness estimation with self-supervised features.

Reproduces "Data brittleness estimation with self-supervised features" (see README.md):
rank training images by similarity in the feature space of one self-supervised model,
then measure removal/mislabel support with bisection over retrained models.
"""

__version__ = "0.1.0"
