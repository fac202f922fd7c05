"""KNI / NI (Qu et al., DLP-KDD'19) in PyTorch: data pipeline, model, training and evaluation.

This package is the science only: it never imports ``workbench``, never prints, and reports
progress by yielding typed records or through :mod:`logging`.
"""

__version__ = "0.1.0"
