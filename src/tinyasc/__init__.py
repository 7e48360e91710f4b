"""tinyasc: low-complexity, device-robust acoustic scene classification.

Implements BC-ResNet-ASC with Residual Normalization (Kim et al., DCASE 2021 Task 1A winner).
"""
from tinyasc.errors import TinyascError

__version__ = "0.1.0"
__all__ = ["TinyascError", "__version__", "load"]


def load(*paths, threads=None, device="cpu", backend="auto"):
    """A classifier from tinyasc checkpoints or exported .onnx models (several: an ensemble):
    `tinyasc.load("model.onnx").predict(["a.wav", "b.wav"])` → (labels, probabilities).
    See tinyasc.predict.Classifier; torch and onnxruntime are imported only here."""
    from tinyasc.predict import load as _load

    return _load(*paths, threads=threads, device=device, backend=backend)
