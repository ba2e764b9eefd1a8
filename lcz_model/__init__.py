"""lcz_model: plain PyTorch side of lcz-annotator (never imports Django).

The dataset package (see shared design notes, dataset-package.md) is the only bridge
from the annotation app to this package.
"""
